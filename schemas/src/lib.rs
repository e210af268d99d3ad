//! `edge-schema`: the contract every edgepipe crate shares.
#![deny(missing_docs)]
