//! Behaviour tests of the gradient-equivalence suite: every oracle passes on every case, and the
//! checker fails on planted errors.

mod autograd;
mod closed_form;
mod dag;
mod identities;
mod oracles;
mod relax_input;
