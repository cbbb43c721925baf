//! The `ui` layer (see the crate docs for the layout).
