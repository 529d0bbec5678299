//! The building blocks every architecture is made of: the linear layer with its
//! adapter slots, RMSNorm, rotary embeddings, attention and its mask, and the
//! key/value cache. Nothing here knows which model it is part of.

pub mod attention;
pub mod kv_cache;
pub mod linear;
pub mod norm;
pub mod rope;

pub use attention::{attention, AttnMask};
pub use kv_cache::KvCache;
pub use linear::{Linear, LoraWeights, SharedInput};
pub use norm::RmsNorm;
pub use rope::{Rope, RopeScaling};
