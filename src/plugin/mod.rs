//! The `plugin` layer (see the crate docs for the layout).
