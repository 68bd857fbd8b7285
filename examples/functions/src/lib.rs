//! Tiny functions for Ember's serving examples and tests (see `src/bin/`): `ember-echo`, an HTTP
//! function that reports its environment and each request, and `ember-fail`, one that exits at
//! once with a message.
