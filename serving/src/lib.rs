//! Ember's serving: Knative-style Services whose revisions Ember starts from zero when events
//! wait for them and scales by queue depth.
//!
//! This crate will own Service/Configuration/Revision/Route, the runtimes (local processes, and
//! Kubernetes in operator mode), the activator that holds requests while a revision wakes, and
//! the autoscaler. It is independent of the broker: the broker delivers to a revision through
//! its route's URL and reports queue depth through a narrow interface. Nothing is implemented
//! yet: `ember run` refuses `Service` with `not supported yet`.
