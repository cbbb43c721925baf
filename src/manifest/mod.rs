//! The `manifest` layer (see the crate docs for the layout).
