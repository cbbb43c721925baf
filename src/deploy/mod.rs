//! The `deploy` layer (see the crate docs for the layout).
