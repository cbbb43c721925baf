//! The `sim` layer (see the crate docs for the layout).
