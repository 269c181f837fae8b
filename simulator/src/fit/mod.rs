//! Fitting and validating profiles: the launch path fitted to the paper's figures
//! ([`launch`]), the NPU's parameters fitted to a vendor's estimator ([`vendor`]) over graph
//! grids ([`graph_families`]), the error per graph family ([`validation`]), the numerics and
//! refusals probed on the NPU itself ([`numerics_probe`]), the fitted profile's file
//! ([`profile_edit`]), and the profiles derived from a fit for SoCs the vendor does not estimate
//! ([`mod@derive`]). Not the ratio calibration of the core.

pub mod derive;
pub mod graph_families;
pub mod launch;
pub mod numerics_probe;
pub mod phones;
pub mod profile_edit;
pub mod validation;
pub mod vendor;
