//! The documented keys of a run's configuration: each is a key of `config.toml` and a long flag
//! of `cargo xtask train`, so one table serves config files, the command line and its help.
//! [`TrainConfig::overlay`] and [`TrainConfig::set`] apply them.

use crate::{AlgorithmName, Fderiv, InitName, OptimizerName, TrainConfig, TrainError};
use ar_core::{Feedback, FprimeUse, InitialState, Schedule, Solver};

/// How a key's value is written on a command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// A switch: given means true.
    Switch,
    /// A number.
    Number,
    /// Text: a name (one of [`Key::values`] when that is not empty) or a path.
    Text,
    /// Names from [`Key::values`], comma-separated.
    List,
}

/// One configuration key.
#[derive(Clone, Copy, Debug)]
pub struct Key {
    /// The key (kebab-case), which is also the flag's name.
    pub name: &'static str,
    /// How its value is written.
    pub kind: KeyKind,
    /// The accepted names (empty: any text, or a number).
    pub values: &'static [&'static str],
    /// What it sets.
    pub help: &'static str,
}

const fn key(name: &'static str, kind: KeyKind, help: &'static str) -> Key {
    Key { name, kind, values: &[], help }
}

const fn one_of(name: &'static str, values: &'static [&'static str], help: &'static str) -> Key {
    Key { name, kind: KeyKind::Text, values, help }
}

use KeyKind::{Number, Switch, Text};

/// Every key of [`TrainConfig`], in the order `train --help` lists them.
pub const KEYS: &[Key] = &[
    one_of(
        "dataset",
        ar_data::NAMES,
        "Data set. `digits` is the bundled UCI 8x8 digits set, split into train and test by a \
         stratified, seeded split (see --test-fraction); the others are read from --data-dir \
         (get them with `cargo xtask data fetch NAME`). Inputs are scaled to [0, 1] for digits, \
         mnist and fashion-mnist (paper 1) and to [-1, 1] for cifar10, cifar100 and svhn (paper 2).",
    ),
    key(
        "data-dir",
        Text,
        "Root folder of the data sets (one subfolder per data set; digits at the root). Default: \
         $AR_DATA_DIR, else the repository's datasets/ folder.",
    ),
    key(
        "test-fraction",
        Number,
        "Fraction of each class held out for testing (digits only; the others have a test set).",
    ),
    key(
        "model",
        Text,
        "Model: `auto` (digits-mlp for digits, otherwise paper-1's hidden widths 300-300-100 \
         between the data's input size and class count), `digits-mlp` (64-64-32-10 tanh), \
         `paper1-mlp` (784-300-300-100-10 relu), MLP widths joined by '-' (64-128-10); \
         `cnn-paper` (paper 2's CNN, adapting to the input), `cnn-deep` (128-256-512-512 3x3 \
         convolutions with 2x2 max-pooling), `cnn-digits` (a small CNN for the 8x8 digits), or a \
         layer spec such as `conv6x5:tanh,maxpool2,conv16x5:tanh,flatten,fc120:tanh,fc10` \
         (docs/models.md).",
    ),
    key(
        "hidden-activation",
        Text,
        "Hidden-layer activation for an MLP (identity, relu, leaky-relu, tanh, sigmoid, \
         softplus); presets use their own unless this is given.",
    ),
    key("output-activation", Text, "Output-layer activation of an MLP (usually identity)."),
    Key {
        name: "algorithms",
        kind: KeyKind::List,
        values: AlgorithmName::NAMES,
        help: "Algorithms to train side by side from the same initial weights and batch order: ar \
               (activation relaxation with the variant flags), bp (exact backprop), fa (feedback \
               alignment: backprop through fixed random backward weights).",
    },
    one_of(
        "feedback",
        Feedback::NAMES,
        "AR backward weights: transpose (W^T, exact), learned (a separate matrix updated with \
         W's transposed update), or random (fixed).",
    ),
    key("feedback-decay", Number, "Kolen-Pollack weight decay lambda on W and psi (learned feedback only)."),
    key(
        "no-fprime-backward",
        Switch,
        "Drop f'(a) from the backward VJP (in the relaxation; paper 1 eq. 7 with learned feedback).",
    ),
    key("no-fprime-update", Switch, "Drop f'(a) from the weight update."),
    one_of(
        "fderiv",
        Fderiv::NAMES,
        "Evaluate f' at the relaxing state W v + b instead of the stored a (paper 2's unfrozen \
         feedforward variants; not gradient-aligned): in the relaxation, the update, or both.",
    ),
    key(
        "current-input",
        Switch,
        "Use the relaxed v_{k-1}(T) instead of h_{k-1} as the update's presynaptic term (paper 2).",
    ),
    key(
        "relax-input",
        Switch,
        "Let the input relax too, as the authors' code does: under --current-input layer 1 then \
         learns from the relaxed input v_0(T), under --fderiv its f' is taken at W_1 v_0 + b_1 \
         (exact AR is unchanged).",
    ),
    key(
        "state-fprime-without-bias",
        Switch,
        "With --fderiv, re-evaluate f' at W v without the bias, as the authors' code does.",
    ),
    one_of(
        "conv-feedback",
        Feedback::NAMES,
        "Backward kernels of the convolutional layers, when they differ from --feedback (which \
         then applies to the dense layers only), as paper 2's code sets them per layer type.",
    ),
    one_of(
        "conv-fprime",
        FprimeUse::NAMES,
        "Which f' the convolutional layers keep, when it differs from the dense layers' \
         (--no-fprime-backward and --no-fprime-update then apply to the dense layers only).",
    ),
    key(
        "conv-lr-scale",
        Number,
        "Multiply the convolutions' gradients by this (their learning rate, under SGD); the \
         authors' code amounts to 2.",
    ),
    key(
        "conv-grad-clip",
        Number,
        "Clamp each element of a convolution's batch-mean gradient to [-X, X] before the scale; \
         the authors' code amounts to 50 / (4 * batch size).",
    ),
    key("no-conv-bias", Switch, "Convolutions without bias (kept at zero), as in the authors' code."),
    key("eta", Number, "Euler step of the relaxation (the \"inference learning rate\"), in (0, 2)."),
    key("steps", Number, "Relaxation iterations T per batch (the most, with --tolerance)."),
    key(
        "tolerance",
        Number,
        "Stop a relaxation early once the relative change per unit eta falls to this.",
    ),
    one_of(
        "schedule",
        Schedule::NAMES,
        "Relaxation schedule: parallel (all layers read the previous iterate: the papers' \
         equations) or sweep (top-down, each layer reads the updated layer above: the reference \
         code).",
    ),
    one_of(
        "start",
        InitialState::NAMES,
        "Relaxation start: the feedforward activities h_k, or zero.",
    ),
    one_of(
        "solver",
        Solver::NAMES,
        "Relaxation solver: euler (T iterations), closed-form (the exact state after T iterations \
         in S - 1 top-down passes, S the relaxing layers, or from the zero start one pass per \
         power of the clamp's drive; rejected with --fderiv relax|both and --tolerance), or auto \
         (closed-form wherever it applies and costs fewer VJPs than the T iterations, else \
         euler).",
    ),
    key("loss", Text, "Loss: mse (1/2 ||y - t||^2, the papers') or cross-entropy."),
    key("epochs", Number, "Epochs (default: 40 on digits, 10 on the other data sets)."),
    one_of(
        "optimizer",
        OptimizerName::NAMES,
        "Optimiser: sgd (with --momentum) or adam (PyTorch's betas 0.9, 0.999 and eps 1e-8).",
    ),
    key("lr", Number, "Learning rate on the batch-mean loss."),
    key("momentum", Number, "SGD momentum (ignored by adam)."),
    key("batch-size", Number, "Samples per batch."),
    one_of(
        "init",
        InitName::NAMES,
        "Weight initialisation: normal (N(0, std^2) weights, zero biases: the papers; std from \
         --init-std), pytorch (nn.Linear's default, U(-1/sqrt(fan_in), 1/sqrt(fan_in))) or \
         kaiming (He normal, N(0, 2 / fan_in), zero biases: for deep ReLU networks).",
    ),
    key("init-std", Number, "Standard deviation of --init normal."),
    key("seed", Number, "Seed of the weights, the split and the batch order."),
    key("backend", Text, "Tensor backend, by the command line's name for it."),
    one_of("precision", &["f32", "f64"], "Numeric precision."),
    key(
        "threads",
        Number,
        "CPU threads (rayon's pool) for the ndarray and candle backends (default: all cores; a \
         SLURM task's CPUs). Applied by train, and per job by sweep. On ndarray the thread \
         count never changes a result (docs/performance.md).",
    ),
    key(
        "probe-every",
        Number,
        "Every this many training steps, measure each layer's angle and relative error between \
         the update and the exact gradient on a fixed batch (and psi against W^T); 0 turns \
         probes off.",
    ),
];

impl TrainConfig {
    /// This configuration with the keys of `table` (a config file's, read from `source`)
    /// replacing its own; an unknown key or a value of the wrong type is an error naming
    /// `source` and the key.
    pub fn overlay(
        &self,
        table: toml::Table,
        source: &std::path::Path,
    ) -> Result<Self, TrainError> {
        let file_error = |message: String| TrainError::File { path: source.to_path_buf(), message };
        if let Some(unknown) = table.keys().find(|k| !KEYS.iter().any(|key| key.name == *k)) {
            return Err(file_error(format!(
                "unknown key '{unknown}' (keys are the long flags of `cargo xtask train`, such as lr or epochs)"
            )));
        }
        self.with(table).map_err(|(key, message)| file_error(format!("key '{key}': {message}")))
    }

    /// Sets `key` from its command-line text: a switch from `true`, a list from names joined
    /// by commas. An unknown key or a value that does not fit is a [`TrainError::Config`].
    pub fn set(&mut self, key: &str, text: &str) -> Result<(), TrainError> {
        let bad = |message: String| TrainError::Config { key: key.into(), message };
        let kind =
            KEYS.iter().find(|k| k.name == key).ok_or_else(|| bad("is not a key".into()))?.kind;
        let value = match kind {
            KeyKind::Switch => toml::Value::Boolean(text == "true"),
            KeyKind::Text => toml::Value::String(text.into()),
            KeyKind::List => toml::Value::Array(
                text.split(',').map(|s| toml::Value::String(s.trim().into())).collect(),
            ),
            KeyKind::Number => match (text.parse::<i64>(), text.parse::<f64>()) {
                (Ok(i), _) => toml::Value::Integer(i),
                // Integers are 64-bit signed in TOML, and so in config.toml.
                _ if text.parse::<u64>().is_ok() => {
                    return Err(bad(format!("'{text}' is larger than {}", i64::MAX)))
                }
                (_, Ok(x)) => toml::Value::Float(x),
                _ => return Err(bad(format!("'{text}' is not a number"))),
            },
        };
        let table = toml::Table::from_iter([(key.to_string(), value)]);
        *self = self.with(table).map_err(|(_, message)| bad(format!("'{text}': {message}")))?;
        Ok(())
    }

    /// This configuration with the keys of `table` (from a program, such as keyword arguments
    /// in Python) replacing its own; an unknown key or a value of the wrong type is a
    /// [`TrainError::Config`] naming the key.
    pub fn with_keys(&self, table: toml::Table) -> Result<Self, TrainError> {
        if let Some(unknown) = table.keys().find(|k| !KEYS.iter().any(|key| key.name == *k)) {
            return Err(TrainError::Config {
                key: unknown.clone(),
                message: "is not a key (the keys are the long flags of `cargo xtask train`, \
                          such as lr or epochs)"
                    .into(),
            });
        }
        self.with(table).map_err(|(key, message)| TrainError::Config { key, message })
    }

    /// A key's value in this configuration as the command line writes it (`None` when unset, or
    /// a switch that is off).
    pub fn text_of(&self, key: &str) -> Option<String> {
        let table = toml::Table::try_from(self).expect("a config serialises");
        match table.get(key)? {
            toml::Value::String(s) => Some(s.clone()),
            toml::Value::Integer(i) => Some(i.to_string()),
            toml::Value::Float(x) => Some(x.to_string()),
            toml::Value::Boolean(b) => b.then(|| "true".into()),
            toml::Value::Array(items) => {
                let names: Vec<String> =
                    items.iter().filter_map(|v| v.as_str()).map(String::from).collect();
                Some(names.join(","))
            }
            _ => None,
        }
    }

    /// This configuration with `table`'s keys replacing its own; the error names the first
    /// key whose value does not fit.
    fn with(&self, table: toml::Table) -> Result<Self, (String, String)> {
        let mut merged = toml::Table::try_from(self).expect("a config serialises");
        for (key, value) in &table {
            // Each key alone first, so that an error can name it.
            let mut one =
                toml::Table::try_from(TrainConfig::default()).expect("a config serialises");
            one.insert(key.clone(), value.clone());
            one.try_into::<TrainConfig>().map_err(|e| (key.clone(), e.message().to_string()))?;
        }
        merged.extend(table);
        merged.try_into().map_err(|e: toml::de::Error| (String::new(), e.message().to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn every_field_is_a_key_and_every_key_a_field() {
        let mut all = TrainConfig {
            data_dir: Some("d".into()),
            hidden_activation: Some(ar_backend::Activation::Tanh),
            fderiv: Some(Fderiv::Both),
            conv_feedback: Some(Feedback::Random),
            conv_fprime: Some(FprimeUse::Neither),
            conv_grad_clip: Some(1.0),
            tolerance: Some(1e-3),
            epochs: Some(3),
            threads: Some(2),
            ..TrainConfig::default()
        };
        (all.no_fprime_backward, all.no_fprime_update, all.current_input) = (true, true, true);
        (all.relax_input, all.state_fprime_without_bias, all.no_conv_bias) = (true, true, true);
        let table = toml::Table::try_from(&all).unwrap();
        let fields: Vec<&str> = table.keys().map(String::as_str).collect();
        let mut keys: Vec<&str> = KEYS.iter().map(|k| k.name).collect();
        keys.sort();
        assert_eq!(fields, keys, "toml::Table keeps keys sorted");
        // Each key's text, set on a default config, rebuilds the full one.
        let mut rebuilt = TrainConfig::default();
        for key in KEYS {
            rebuilt.set(key.name, &all.text_of(key.name).unwrap()).unwrap();
        }
        assert_eq!(rebuilt, all);
    }

    #[test]
    fn set_and_overlay_name_the_key_at_fault() {
        let mut c = TrainConfig::default();
        c.set("lr", "0.5").unwrap();
        c.set("epochs", "3").unwrap();
        c.set("algorithms", "fa,ar").unwrap();
        assert_eq!((c.lr, c.epochs, c.algorithms.len()), (0.5, Some(3), 2));
        for (key, text) in
            [("epochs", "1.5"), ("lr", "fast"), ("feedback", "sideways"), ("lr2", "1")]
        {
            let e = c.set(key, text).unwrap_err();
            assert!(matches!(&e, TrainError::Config { key: k, .. } if k == key), "{e}");
        }
        assert_eq!(c.lr, 0.5, "a failed set changes nothing");
        let file = Path::new("exp.toml");
        let table: toml::Table = "momentum = 0.5\nno-conv-bias = true".parse().unwrap();
        let d = c.overlay(table, file).unwrap();
        assert!(d.no_conv_bias && d.momentum == 0.5 && d.lr == 0.5);
        for text in ["learning_rate = 1", "steps = \"many\""] {
            let e = c.overlay(text.parse().unwrap(), file).unwrap_err().to_string();
            let key = text.split(' ').next().unwrap();
            assert!(e.contains("exp.toml") && e.contains(key), "{e}");
        }
    }
}
