//! Checkpoints in safetensors with PyTorch's names and layouts (`layers.{i}.weight` as
//! `[out, in]`, `layers.{i}.bias`, or a residual model's module paths such as
//! `layers.2.branch.0.weight`), backward matrices as `layers.{i}.feedback` (`[in, out]`),
//! optimiser state as `optimizer.layers.{i}.{param}.{first|second}`, and the model, training
//! state and any caller metadata (such as the run's configuration) in the header, with a SHA-256
//! checksum of every tensor's bytes and one SHA-256 digest over the whole header and every
//! tensor, so that a damaged or altered file (a changed seed, epoch count or tensor) is refused
//! rather than loaded. Files of the earlier format, without the digest, load only when the
//! caller asks for it ([`load_checkpoint_allowing_legacy`]).
//! Written atomically: a temporary file, fsync, rename, fsync of the directory; a failed write
//! leaves the earlier file and no temporary one.

use crate::ModelError;
use ar_backend::{Backend, Precision};
use ar_core::{LayerShape, Network, Optimizer};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;

/// The `format` value in every checkpoint's header.
pub const FORMAT: &str = "ar-rs checkpoint 2";

/// The format before the header digest: its metadata cannot be verified.
const LEGACY_FORMAT: &str = "ar-rs checkpoint 1";

/// The header key of the digest over the header and every tensor.
const DIGEST: &str = "digest";

/// Where training stands when a checkpoint is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrainingState {
    /// Epochs completed.
    pub epochs_done: usize,
    /// Batches completed in the epoch under way (0 at an epoch boundary).
    pub batches_done: usize,
}

/// A checkpoint read back: the network, the optimiser state tensors by name, the training
/// state and the caller's metadata.
#[derive(Debug)]
pub struct Checkpoint<B: Backend> {
    /// The network, with feedback matrices where they were saved.
    pub net: Network<B>,
    /// Optimiser state tensors with the names of [`Optimizer::state`].
    pub optimizer_state: Vec<(String, B::Tensor)>,
    /// Optimiser updates applied so far.
    pub optimizer_steps: u64,
    /// Where training stood.
    pub state: TrainingState,
    /// The caller's metadata.
    pub metadata: BTreeMap<String, String>,
    /// What the reader could not check, for the caller to show (a file written before
    /// checksums were stored has none to verify).
    pub warnings: Vec<String>,
}

impl<B: Backend> Checkpoint<B> {
    /// Restores the optimiser's state and step count into `optimizer` (of the same kind the
    /// checkpoint was written with) and returns the network.
    pub fn restore_into(self, optimizer: &mut Optimizer<B>) -> Result<Network<B>, ModelError> {
        optimizer
            .restore(self.net.depth(), self.optimizer_steps, self.optimizer_state)
            .map_err(ModelError::Core)?;
        Ok(self.net)
    }
}

/// The header key of the per-tensor checksums (a JSON object of name to SHA-256 hex).
const CHECKSUMS: &str = "tensor_sha256";

/// The header key of the layers' module paths (a JSON list), where they are not the default
/// `layers.{i}`.
const NAMES: &str = "names";

/// The header key of a DAG's parents: a JSON list, per layer, of the nodes it reads (0 the
/// input, `k` layer `k`'s output). Absent for a chain.
const GRAPH: &str = "graph";

fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 over every header entry but the digest (sorted by key) and every tensor (sorted by
/// name: its name, dtype, shape and bytes), each field length-prefixed so that no two files
/// share an input.
fn file_digest<'a>(
    header: impl IntoIterator<Item = (&'a String, &'a String)>,
    tensors: impl IntoIterator<Item = (String, Dtype, Vec<usize>, &'a [u8])>,
) -> String {
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    let entries: BTreeMap<&String, &String> =
        header.into_iter().filter(|(k, _)| k.as_str() != DIGEST).collect();
    for (k, v) in entries {
        field(k.as_bytes());
        field(v.as_bytes());
    }
    let mut tensors: Vec<_> = tensors.into_iter().collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, dtype, shape, data) in tensors {
        field(name.as_bytes());
        field(format!("{dtype:?} {shape:?}").as_bytes());
        field(data);
    }
    hex(&h.finalize())
}

fn err(path: &Path, message: impl Into<String>) -> ModelError {
    ModelError::Checkpoint { path: path.to_path_buf(), message: message.into() }
}

fn to_bytes(values: &[f64], precision: Precision) -> Vec<u8> {
    match precision {
        Precision::F32 => values.iter().flat_map(|&v| (v as f32).to_le_bytes()).collect(),
        Precision::F64 => values.iter().flat_map(|&v| v.to_le_bytes()).collect(),
    }
}

/// Writes `net`, the optimiser's state, the training state and `metadata` to `path`
/// atomically, in the backend's precision.
pub fn save_checkpoint<B: Backend>(
    path: &Path,
    net: &Network<B>,
    optimizer: &Optimizer<B>,
    state: TrainingState,
    metadata: &BTreeMap<String, String>,
) -> Result<(), ModelError> {
    let be = net.backend();
    let precision = be.precision();
    let dtype = match precision {
        Precision::F32 => Dtype::F32,
        Precision::F64 => Dtype::F64,
    };
    let records: Vec<LayerShape> = net.layers.iter().map(|l| l.layer_shape(be)).collect();
    let optimizer_state =
        optimizer.state().into_iter().map(|(name, t)| (name, be.shape(t), be.to_host(t)));
    let tensors: Vec<(String, Vec<usize>, Vec<u8>)> = net
        .parameters()
        .into_iter()
        .chain(optimizer_state)
        .map(|(name, shape, values)| (name, shape, to_bytes(&values, precision)))
        .collect();
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(n, shape, bytes)| {
            TensorView::new(dtype, shape.clone(), bytes)
                .map(|v| (n.clone(), v))
                .map_err(|e| err(path, e.to_string()))
        })
        .collect::<Result<_, _>>()?;
    let mut header: HashMap<String, String> =
        metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    header.insert("format".into(), FORMAT.into());
    header.insert("model".into(), serde_json::to_string(&records).expect("records serialise"));
    if !net.is_chain() {
        // Which nodes each layer reads; absent for a chain (each layer reads the one before).
        let graph: Vec<&[usize]> = (1..=net.depth()).map(|k| net.parents(k)).collect();
        header.insert(GRAPH.into(), serde_json::to_string(&graph).expect("graph serialises"));
    }
    if net.names() != ar_core::default_names(net.depth()) {
        header.insert(NAMES.into(), serde_json::to_string(net.names()).expect("names serialise"));
    }
    header.insert(
        "input_shape".into(),
        serde_json::to_string(net.input_shape()).expect("shape serialises"),
    );
    header
        .insert("training_state".into(), serde_json::to_string(&state).expect("state serialises"));
    let sums: BTreeMap<&str, String> =
        tensors.iter().map(|(n, _, bytes)| (n.as_str(), sha256_hex(bytes))).collect();
    header.insert(CHECKSUMS.into(), serde_json::to_string(&sums).expect("checksums serialise"));
    header.insert("optimizer_steps".into(), optimizer.steps().to_string());
    let digest = file_digest(
        &header,
        tensors.iter().map(|(n, shape, bytes)| (n.clone(), dtype, shape.clone(), bytes.as_slice())),
    );
    header.insert(DIGEST.into(), digest);
    let bytes =
        safetensors::serialize(views, Some(header)).map_err(|e| err(path, e.to_string()))?;
    write_atomically(path, &with_sorted_metadata(&bytes).map_err(|e| err(path, e))?)
}

/// `bytes` (a safetensors file) with its header's metadata in key order: the safetensors crate
/// writes a `HashMap`, whose order changes from one process to the next, so two identical runs
/// would otherwise write files that differ byte for byte (and `sha256sum` could not compare
/// them). Tensor entries keep their data order; the header is padded to 8 bytes as before.
fn with_sorted_metadata(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let bad = |why: String| format!("rewriting the header: {why}");
    let n = bytes.get(..8).ok_or_else(|| bad("no length".into()))?;
    let n = u64::from_le_bytes(n.try_into().expect("8 bytes")) as usize;
    let json = bytes.get(8..8 + n).ok_or_else(|| bad("header beyond the file".into()))?;
    let mut entries: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(json).map_err(|e| bad(e.to_string()))?;
    let metadata: Option<BTreeMap<String, String>> = entries
        .remove("__metadata__")
        .map(serde_json::from_value)
        .transpose()
        .map_err(|e| bad(e.to_string()))?;
    let start = |v: &serde_json::Value| v["data_offsets"][0].as_u64().unwrap_or(0);
    let mut tensors: Vec<(String, serde_json::Value)> = entries.into_iter().collect();
    tensors.sort_by_key(|(_, info)| start(info));
    let mut header = String::from("{");
    let mut entry = |key: &str, value: String| {
        if header.len() > 1 {
            header.push(',');
        }
        header.push_str(&serde_json::to_string(key).expect("a string serialises"));
        header.push(':');
        header.push_str(&value);
    };
    if let Some(m) = metadata {
        entry("__metadata__", serde_json::to_string(&m).expect("a map serialises"));
    }
    for (name, info) in &tensors {
        entry(name, serde_json::to_string(info).expect("a value serialises"));
    }
    header.push('}');
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let mut out = Vec::with_capacity(bytes.len() + 8);
    out.extend((header.len() as u64).to_le_bytes());
    out.extend(header.as_bytes());
    out.extend(&bytes[8 + n..]);
    Ok(out)
}

/// Writes plain f64 tensors (name, shape, values) to a safetensors file at `path`, atomically.
pub fn write_f64_tensors(
    path: &Path,
    tensors: &[(&str, Vec<usize>, Vec<f64>)],
) -> Result<(), ModelError> {
    let bytes: Vec<Vec<u8>> = tensors.iter().map(|(_, _, v)| to_bytes(v, Precision::F64)).collect();
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), b)| {
            TensorView::new(Dtype::F64, shape.clone(), b)
                .map(|v| (name.to_string(), v))
                .map_err(|e| err(path, e.to_string()))
        })
        .collect::<Result<_, _>>()?;
    let data = safetensors::serialize(views, None).map_err(|e| err(path, e.to_string()))?;
    write_atomically(path, &data)
}

/// Writes `bytes` to a temporary file beside `path`, syncs it, and renames it over `path`, so a
/// crash leaves either the old file or the new one, never a torn one.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ModelError> {
    let tmp = path.with_extension("tmp");
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        std::fs::remove_file(&tmp).ok();
        return Err(err(path, e.to_string()));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = std::fs::File::open(dir) {
            d.sync_all().ok();
        }
    }
    Ok(())
}

/// Reads a checkpoint written by [`save_checkpoint`] onto backend `be` (any precision: values
/// are converted), verifying every tensor's checksum and the digest over the header and the
/// tensors. A file of the earlier format (no digest) is refused.
pub fn load_checkpoint<B: Backend>(path: &Path, be: &B) -> Result<Checkpoint<B>, ModelError> {
    read_checkpoint(path, be, false)
}

/// [`load_checkpoint`], also reading files of the earlier format whose header carries no
/// digest (its metadata cannot be verified: the returned warnings say so). For a caller who
/// trusts the file, on the user's explicit request.
pub fn load_checkpoint_allowing_legacy<B: Backend>(
    path: &Path,
    be: &B,
) -> Result<Checkpoint<B>, ModelError> {
    read_checkpoint(path, be, true)
}

fn read_checkpoint<B: Backend>(
    path: &Path,
    be: &B,
    allow_legacy: bool,
) -> Result<Checkpoint<B>, ModelError> {
    // A device such as /dev/zero would be read without end.
    let meta = std::fs::metadata(path).map_err(|e| err(path, e.to_string()))?;
    if !meta.is_file() {
        return Err(err(path, "not a regular file, so not a checkpoint"));
    }
    let bytes = std::fs::read(path).map_err(|e| err(path, e.to_string()))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| err(path, format!("not a safetensors file: {e}")))?;
    let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| err(path, e.to_string()))?;
    let header = meta.metadata().clone().unwrap_or_default();
    let legacy = match header.get("format").map(String::as_str) {
        Some(FORMAT) => false,
        Some(LEGACY_FORMAT) if allow_legacy => true,
        Some(LEGACY_FORMAT) => {
            return Err(err(
                path,
                format!(
                    "written in the earlier format '{LEGACY_FORMAT}', whose header carries no \
                     digest: its config and training state cannot be verified. Read it only if \
                     you trust it (`cargo xtask eval --allow-legacy`)"
                ),
            ))
        }
        other => {
            return Err(err(
                path,
                format!("not an ar-rs checkpoint (header 'format' is {other:?})"),
            ))
        }
    };
    let field = |k: &str| header.get(k).ok_or_else(|| err(path, format!("header lacks '{k}'")));
    let records: Vec<LayerShape> = serde_json::from_str(field("model")?)
        .map_err(|e| err(path, format!("bad 'model': {e}")))?;
    let state: TrainingState = serde_json::from_str(field("training_state")?)
        .map_err(|e| err(path, format!("bad 'training_state': {e}")))?;
    let optimizer_steps: u64 = field("optimizer_steps")?
        .parse()
        .map_err(|e| err(path, format!("bad 'optimizer_steps': {e}")))?;
    let read = |name: &str, shape: &[usize]| -> Result<B::Tensor, ModelError> {
        let view = st.tensor(name).map_err(|_| err(path, format!("missing tensor '{name}'")))?;
        tensor_from_view(path, name, &view, Some(shape), be)
    };
    let input_shape: Vec<usize> = serde_json::from_str(field("input_shape")?)
        .map_err(|e| err(path, format!("bad 'input_shape': {e}")))?;
    let mut warnings = Vec::new();
    match header.get(CHECKSUMS) {
        Some(text) => {
            let sums: BTreeMap<String, String> = serde_json::from_str(text)
                .map_err(|e| err(path, format!("bad '{CHECKSUMS}': {e}")))?;
            for (name, view) in st.tensors() {
                match sums.get(&name) {
                    Some(sum) if *sum == sha256_hex(view.data()) => {}
                    Some(_) => {
                        return Err(err(
                            path,
                            format!(
                                "tensor '{name}' does not match its checksum: the file is damaged"
                            ),
                        ))
                    }
                    None => return Err(err(path, format!("tensor '{name}' has no checksum"))),
                }
            }
        }
        None if legacy => warnings.push(format!(
            "{}: written before checkpoints carried checksums; its tensors cannot be verified",
            path.display()
        )),
        None => return Err(err(path, format!("header lacks '{CHECKSUMS}'"))),
    }
    if legacy {
        warnings.push(format!(
            "{}: earlier format without a header digest; its config and training state are not \
             verified",
            path.display()
        ));
    } else {
        let stored = field(DIGEST)?;
        let tensors = st
            .tensors()
            .into_iter()
            .map(|(name, view)| (name, view.dtype(), view.shape().to_vec(), view.data()));
        if *stored != file_digest(&header, tensors) {
            return Err(err(
                path,
                "does not match its digest: its header (config, training state) or a tensor \
                 was changed after it was written",
            ));
        }
    }
    let names: Vec<String> = match header.get(NAMES) {
        Some(text) => {
            serde_json::from_str(text).map_err(|e| err(path, format!("bad '{NAMES}': {e}")))?
        }
        None => ar_core::default_names(records.len()),
    };
    if names.len() != records.len() {
        return Err(err(
            path,
            format!("'{NAMES}' has {} entries for {} layers", names.len(), records.len()),
        ));
    }
    let mut layers = Vec::new();
    for (shape, name) in records.iter().zip(&names) {
        let params = match shape.weight_shape() {
            Some(weight_shape) => {
                let feedback_name = format!("{name}.feedback");
                let feedback = match st.tensor(&feedback_name) {
                    Ok(_) => {
                        Some(read(&feedback_name, &shape.feedback_shape().expect("weighted"))?)
                    }
                    Err(_) => None,
                };
                let weight = read(&format!("{name}.weight"), &weight_shape)?;
                Some((weight, read(&format!("{name}.bias"), &[shape.bias_len()])?, feedback))
            }
            None => None,
        };
        layers.push(shape.layer(params));
    }
    let parents = match header.get(GRAPH) {
        Some(text) => {
            serde_json::from_str(text).map_err(|e| err(path, format!("bad '{GRAPH}': {e}")))?
        }
        None => ar_core::chain_parents(layers.len()),
    };
    let net = Network::from_graph(be.clone(), &input_shape, layers, parents)
        .and_then(|n| n.with_names(names))
        .map_err(|e| err(path, e.to_string()))?;
    let mut optimizer_state = Vec::new();
    for (name, view) in st.tensors() {
        if name.starts_with("optimizer.") {
            optimizer_state.push((name.clone(), tensor_from_view(path, &name, &view, None, be)?));
        }
    }
    optimizer_state.sort_by(|a, b| a.0.cmp(&b.0));
    let reserved = [
        "format",
        "model",
        "input_shape",
        "training_state",
        "optimizer_steps",
        CHECKSUMS,
        DIGEST,
        GRAPH,
        NAMES,
    ];
    let metadata = header.into_iter().filter(|(k, _)| !reserved.contains(&k.as_str())).collect();
    Ok(Checkpoint { net, optimizer_state, optimizer_steps, state, metadata, warnings })
}

fn tensor_from_view<B: Backend>(
    path: &Path,
    name: &str,
    view: &TensorView<'_>,
    expect: Option<&[usize]>,
    be: &B,
) -> Result<B::Tensor, ModelError> {
    if let Some(shape) = expect {
        if view.shape() != shape {
            return Err(err(
                path,
                format!("tensor '{name}' has shape {:?}, expected {shape:?}", view.shape()),
            ));
        }
    }
    let data = view.data();
    let values: Vec<f64> = match view.dtype() {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
        Dtype::F64 => data
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect(),
        other => {
            return Err(err(
                path,
                format!("tensor '{name}' has dtype {other:?}; expected F32 or F64"),
            ))
        }
    };
    Ok(be.from_host(&values, view.shape()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ModelSpec;
    use ar_core::{Activation, Algorithm, Feedback, Init, Loss, Relaxation, Trainer};
    use ar_ndarray::NdArray;

    fn dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("ar-models-ckpt-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn trained<B: Backend>(be: B) -> (Network<B>, Trainer<B>) {
        let spec =
            ModelSpec::parse_widths("6-5-4-3", Activation::Tanh, Activation::Identity).unwrap();
        let mut net = spec.build(be.clone(), Init::PyTorch, 1).unwrap();
        let mut algorithm = Algorithm::relaxation(Relaxation::papers());
        algorithm.variant.feedback = Feedback::Learned;
        net.init_feedback(Init::papers(), 1, &algorithm);
        let mut trainer = Trainer::new(algorithm, Loss::Mse, Optimizer::adam(0.01), &net).unwrap();
        let x = be.from_host(&(0..12).map(|i| (i as f64 * 0.3).cos()).collect::<Vec<_>>(), &[2, 6]);
        let t = be.from_host(&[1.0, 0.0, 0.0, 0.0, 1.0, 0.0], &[2, 3]);
        for _ in 0..3 {
            trainer.step(&mut net, &x, &t);
        }
        (net, trainer)
    }

    fn host<B: Backend>(net: &Network<B>) -> Vec<Vec<f64>> {
        let be = net.backend();
        net.layers
            .iter()
            .flat_map(|l| {
                let d = l.as_dense().expect("an MLP layer");
                let mut v = vec![be.to_host(&d.weight), be.to_host(&d.bias)];
                v.extend(d.feedback.as_ref().map(|p| be.to_host(p)));
                v
            })
            .collect()
    }

    fn round_trip<B: Backend>(be: B, path: &Path) {
        let meta: BTreeMap<String, String> =
            [("config".to_string(), "lr = 0.01".to_string())].into();
        let state = TrainingState { epochs_done: 2, batches_done: 5 };
        let (net, trainer) = trained(be.clone());
        save_checkpoint(path, &net, trainer.optimizer(), state, &meta).unwrap();
        let c = load_checkpoint(path, &be).unwrap();
        assert_eq!(host(&c.net), host(&net), "weights bit-identical after a round trip");
        let saved: Vec<(String, Vec<f64>)> =
            trainer.optimizer().state().into_iter().map(|(n, t)| (n, be.to_host(t))).collect();
        let loaded: Vec<(String, Vec<f64>)> =
            c.optimizer_state.iter().map(|(n, t)| (n.clone(), be.to_host(t))).collect();
        let mut saved_sorted = saved.clone();
        saved_sorted.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(loaded, saved_sorted);
        assert_eq!((c.state, c.optimizer_steps), (state, 3));
        assert_eq!(c.metadata.get("config").map(String::as_str), Some("lr = 0.01"));
        assert!(
            c.net.layers[1].as_dense().expect("an MLP layer").feedback.is_some()
                && c.net.layers[0].as_dense().expect("an MLP layer").feedback.is_none()
        );
    }

    #[test]
    fn round_trip_is_exact_in_both_precisions() {
        let d = dir("roundtrip");
        round_trip(NdArray::<f32>::new(), &d.join("a.safetensors"));
        round_trip(NdArray::<f64>::new(), &d.join("b.safetensors"));
        // PyTorch's names and layouts.
        let bytes = std::fs::read(d.join("a.safetensors")).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(st.tensor("layers.0.weight").unwrap().shape(), &[5, 6]);
        assert_eq!(st.tensor("layers.0.weight").unwrap().dtype(), Dtype::F32);
        assert_eq!(st.tensor("layers.2.feedback").unwrap().shape(), &[4, 3]);
        std::fs::remove_dir_all(&d).ok();
    }

    #[test]
    fn damaged_files_give_errors_naming_the_file() {
        let d = dir("damaged");
        let (net, trainer) = trained(NdArray::<f64>::new());
        let path = d.join("c.safetensors");
        save_checkpoint(
            &path,
            &net,
            trainer.optimizer(),
            TrainingState { epochs_done: 1, batches_done: 0 },
            &BTreeMap::new(),
        )
        .unwrap();
        let bytes = std::fs::read(&path).unwrap();
        for cut in [0, 7, 8, 100, bytes.len() - 1] {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            let e = load_checkpoint(&path, &NdArray::<f64>::new()).unwrap_err().to_string();
            assert!(e.contains("c.safetensors"), "{e}");
        }
        let e = load_checkpoint(&d.join("missing.safetensors"), &NdArray::<f64>::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.safetensors"));
        std::fs::remove_dir_all(&d).ok();
    }

    #[test]
    fn flipped_tensor_bytes_are_refused_naming_the_tensor() {
        let d = dir("flipped");
        let (net, trainer) = trained(NdArray::<f64>::new());
        let path = d.join("f.safetensors");
        let state = TrainingState { epochs_done: 1, batches_done: 0 };
        save_checkpoint(&path, &net, trainer.optimizer(), state, &BTreeMap::new()).unwrap();
        let good = std::fs::read(&path).unwrap();
        let c = load_checkpoint(&path, &NdArray::<f64>::new()).unwrap();
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        // The data section follows the 8-byte length and the JSON header.
        let header_len = u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
        let mut bad = good.clone();
        for b in &mut bad[8 + header_len + 16..8 + header_len + 216] {
            *b ^= 0x5a;
        }
        std::fs::write(&path, &bad).unwrap();
        let e = load_checkpoint(&path, &NdArray::<f64>::new()).unwrap_err().to_string();
        assert!(
            e.contains("f.safetensors") && e.contains("tensor '") && e.contains("damaged"),
            "{e}"
        );
        std::fs::remove_dir_all(&d).ok();
    }

    #[test]
    fn the_same_checkpoint_is_written_byte_for_byte_with_its_header_keys_in_order() {
        let d = dir("bytes");
        let (net, trainer) = trained(NdArray::<f64>::new());
        let meta: BTreeMap<String, String> =
            (0..20).map(|i| (format!("key{i:02}"), format!("value {i}"))).collect();
        let state = TrainingState { epochs_done: 1, batches_done: 0 };
        let (a, b) = (d.join("a.safetensors"), d.join("b.safetensors"));
        save_checkpoint(&a, &net, trainer.optimizer(), state, &meta).unwrap();
        save_checkpoint(&b, &net, trainer.optimizer(), state, &meta).unwrap();
        let (a, b) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        assert!(a == b, "two saves of the same state differ");
        let n = u64::from_le_bytes(a[..8].try_into().unwrap()) as usize;
        assert_eq!(n % 8, 0, "the header is padded to 8 bytes");
        let header = std::str::from_utf8(&a[8..8 + n]).unwrap();
        let keys: Vec<usize> =
            (0..20).map(|i| header.find(&format!("\"key{i:02}\"")).unwrap()).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "metadata keys out of order: {header}");
        let c = load_checkpoint(&d.join("a.safetensors"), &NdArray::<f64>::new()).unwrap();
        assert_eq!(c.metadata.get("key07").map(String::as_str), Some("value 7"));
        assert_eq!(c.net.parameters(), net.parameters());
        std::fs::remove_dir_all(&d).ok();
    }

    /// Rewrites the checkpoint at `path` with `edit` applied to its header, tensors unchanged.
    fn rewrite(path: &Path, edit: impl FnOnce(&mut HashMap<String, String>)) {
        let bytes = std::fs::read(path).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
        let mut header = meta.metadata().clone().unwrap();
        edit(&mut header);
        let views: Vec<(String, TensorView<'_>)> = st.tensors();
        let out = safetensors::serialize(views, Some(header)).unwrap();
        std::fs::write(path, out).unwrap();
    }

    fn saved(d: &Path, name: &str) -> (std::path::PathBuf, Network<NdArray<f64>>) {
        let (net, trainer) = trained(NdArray::<f64>::new());
        let path = d.join(name);
        let meta: BTreeMap<String, String> =
            [("config".to_string(), "seed = 0".to_string())].into();
        let state = TrainingState { epochs_done: 1, batches_done: 0 };
        save_checkpoint(&path, &net, trainer.optimizer(), state, &meta).unwrap();
        (path, net)
    }

    #[test]
    fn an_altered_header_is_refused_by_the_digest() {
        let d = dir("altered");
        type Edit = fn(&mut HashMap<String, String>);
        let edits: [(&str, Edit); 4] = [
            ("the config's seed", |h| {
                h.insert("config".into(), "seed = 1".into());
            }),
            ("epochs_done", |h| {
                let s = h["training_state"].replace("\"epochs_done\":1", "\"epochs_done\":7");
                h.insert("training_state".into(), s);
            }),
            ("optimizer_steps", |h| {
                h.insert("optimizer_steps".into(), "99".into());
            }),
            ("an added key", |h| {
                h.insert("note".into(), "hello".into());
            }),
        ];
        for (what, edit) in edits {
            let (path, _) = saved(&d, "h.safetensors");
            load_checkpoint(&path, &NdArray::<f64>::new()).expect("the untouched file loads");
            rewrite(&path, edit);
            let e = load_checkpoint(&path, &NdArray::<f64>::new()).unwrap_err().to_string();
            assert!(e.contains("h.safetensors") && e.contains("digest"), "{what}: {e}");
        }
        std::fs::remove_dir_all(&d).ok();
    }

    #[test]
    fn a_current_file_without_checksums_or_digest_is_refused_not_downgraded() {
        let d = dir("stripped");
        // Checksums renamed away and a data byte flipped: refused, not loaded with a warning.
        let (path, _) = saved(&d, "s.safetensors");
        rewrite(&path, |h| {
            let sums = h.remove(CHECKSUMS).unwrap();
            h.insert("renamed".into(), sums);
        });
        let mut bytes = std::fs::read(&path).unwrap();
        let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        bytes[8 + header_len + 3] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let e = load_checkpoint(&path, &NdArray::<f64>::new()).unwrap_err().to_string();
        assert!(e.contains("lacks 'tensor_sha256'"), "{e}");
        // The digest removed: refused.
        let (path, _) = saved(&d, "t.safetensors");
        rewrite(&path, |h| {
            h.remove(DIGEST);
        });
        let e = load_checkpoint(&path, &NdArray::<f64>::new()).unwrap_err().to_string();
        assert!(e.contains("lacks 'digest'"), "{e}");
        std::fs::remove_dir_all(&d).ok();
    }

    #[test]
    fn earlier_format_files_load_only_when_allowed_and_with_warnings() {
        let d = dir("legacy");
        let (path, net) = saved(&d, "old.safetensors");
        // As the format was before the digest (and, older still, before checksums).
        rewrite(&path, |h| {
            h.insert("format".into(), LEGACY_FORMAT.into());
            h.remove(DIGEST);
            h.remove(CHECKSUMS);
        });
        let e = load_checkpoint(&path, &NdArray::<f64>::new()).unwrap_err().to_string();
        assert!(e.contains("earlier format") && e.contains("--allow-legacy"), "{e}");
        let c = load_checkpoint_allowing_legacy(&path, &NdArray::<f64>::new()).unwrap();
        assert_eq!(host(&c.net), host(&net));
        assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
        assert!(c.warnings[0].contains("checksums") && c.warnings[1].contains("not verified"));
        std::fs::remove_dir_all(&d).ok();
    }

    #[test]
    fn a_failed_atomic_write_keeps_the_old_file_and_leaves_no_temporary() {
        let d = dir("atomic");
        let path = d.join("x.safetensors");
        write_atomically(&path, b"first").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        // A rename onto a non-empty directory fails after the temporary file is written (this
        // works for root too, unlike a read-only directory).
        let blocked = d.join("blocked.safetensors");
        std::fs::create_dir_all(blocked.join("inside")).unwrap();
        let e = write_atomically(&blocked, b"second").unwrap_err().to_string();
        assert!(e.contains("blocked.safetensors"), "{e}");
        assert!(!d.join("blocked.tmp").exists(), "the temporary file is removed");
        // A missing directory: nothing is created, the error names the file.
        let e = write_atomically(&d.join("no/such/dir/y.safetensors"), b"z").unwrap_err();
        assert!(e.to_string().contains("y.safetensors"));
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        std::fs::remove_dir_all(&d).ok();
    }
}
