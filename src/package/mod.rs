//! The `package` layer (see the crate docs for the layout).
