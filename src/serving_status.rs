//! The objects serving makes of each Service, served read-only like the configuration's own
//! resources: its Revisions, its Route and its Configuration, at
//! `/apis/serving.knative.dev/v1/[namespaces/{ns}/]{revisions|routes|configurations}[/{name}]`,
//! in Kubernetes' object and list shapes, with Knative's conditions.
//!
//! A Revision's status also lists what a local process cannot honour of its template
//! (`status.notApplied`: a `containerPort`, `resources`, probes other than readiness, ...):
//! reported, never silently dropped and never a refusal.

use std::net::SocketAddr;

use ember_serving::RevisionRecord;
use http::StatusCode;
use serde_json::{Value, json};

use crate::serving::Services;

const GROUP_VERSION: &str = "serving.knative.dev/v1";

/// Answers `path` if it asks for Revisions, Routes or Configurations; `None` otherwise.
pub fn respond(
    services: &Services,
    listen: SocketAddr,
    path: &str,
) -> Option<(StatusCode, Vec<u8>)> {
    let rest = path
        .strip_prefix("/apis/serving.knative.dev/v1/")?
        .trim_end_matches('/');
    let segments: Vec<&str> = rest.split('/').collect();
    let (namespace, plural, name) = match segments.as_slice() {
        [plural] => (None, *plural, None),
        ["namespaces", ns, plural] => (Some(*ns), *plural, None),
        ["namespaces", ns, plural, name] => (Some(*ns), *plural, Some(*name)),
        _ => return None,
    };
    let kind = match plural {
        "revisions" => "Revision",
        "routes" => "Route",
        "configurations" => "Configuration",
        _ => return None,
    };
    let objects: Vec<Value> = match kind {
        "Revision" => services
            .serving
            .revision_records(namespace)
            .iter()
            .map(revision)
            .collect(),
        "Route" => services
            .serving
            .service_names(namespace)
            .iter()
            .filter(|(ns, svc)| services.serving.is_service(ns, svc))
            .filter_map(|(ns, svc)| per_service(services, listen, kind, ns, svc))
            .chain(
                services
                    .serving
                    .route_names(namespace)
                    .iter()
                    .filter_map(|(ns, name)| standalone_route(services, listen, ns, name)),
            )
            .collect(),
        _ => services
            .serving
            .service_names(namespace)
            .iter()
            .filter_map(|(ns, svc)| per_service(services, listen, kind, ns, svc))
            .collect(),
    };
    let body = match name {
        Some(name) => match objects.into_iter().find(|o| o["metadata"]["name"] == name) {
            Some(o) => o,
            None => {
                let message = format!("{plural}.serving.knative.dev {name:?} not found");
                let body = crate::status::failure(StatusCode::NOT_FOUND, "NotFound", &message);
                return Some((StatusCode::NOT_FOUND, body.to_string().into_bytes()));
            }
        },
        None => json!({
            "apiVersion": GROUP_VERSION,
            "kind": format!("{kind}List"),
            "metadata": {},
            "items": objects,
        }),
    };
    Some((StatusCode::OK, body.to_string().into_bytes()))
}

fn time(secs: u64) -> String {
    chrono::DateTime::from_timestamp(secs as i64, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

fn condition(kind: &str, ok: Option<bool>, reason: &str, message: &str) -> Value {
    json!({
        "type": kind,
        "status": match ok { Some(true) => "True", Some(false) => "False", None => "Unknown" },
        "reason": reason,
        "message": message,
    })
}

/// What a local process cannot honour of a revision's template.
fn not_applied(template: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let spec = &template["spec"];
    for (i, c) in spec["containers"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let at = format!("containers[{i}]");
        if c["image"].is_string() {
            // In a container: only what the container runtime does not do yet.
            for (field, why) in [
                (
                    "livenessProbe",
                    "liveness is not probed: an instance that exits is replaced",
                ),
                ("volumeMounts", "volumes are not mounted yet"),
            ] {
                if !c[field].is_null() {
                    out.push(format!("{at}.{field}: {why}"));
                }
            }
            if let Some(port) = c["ports"][0]["containerPort"].as_i64() {
                out.push(format!(
                    "{at}.ports: containerPort {port} (the container shares the host's network and listens on the PORT Ember picks)"
                ));
            }
            continue;
        }
        if let Some(port) = c["ports"][0]["containerPort"].as_i64() {
            out.push(format!(
                "{at}.ports: containerPort {port} (a local process listens on the PORT Ember picks)"
            ));
        }
        for (field, why) in [
            ("resources", "requests and limits need a container runtime"),
            (
                "livenessProbe",
                "liveness is not probed: an instance that exits is replaced",
            ),
            ("securityContext", "a local process runs as Ember's user"),
            ("volumeMounts", "volumes need a container runtime"),
            ("imagePullPolicy", "no image is pulled"),
        ] {
            if !c[field].is_null() {
                out.push(format!("{at}.{field}: {why}"));
            }
        }
    }
    for (field, why) in [
        ("volumes", "volumes need a container runtime"),
        (
            "serviceAccountName",
            "no Kubernetes identity outside a cluster",
        ),
        ("idleTimeoutSeconds", "not enforced yet"),
        (
            "responseStartTimeoutSeconds",
            "not enforced yet (timeoutSeconds is)",
        ),
    ] {
        if !spec[field].is_null() {
            out.push(format!("{field}: {why}"));
        }
    }
    out
}

fn revision(r: &RevisionRecord) -> Value {
    let (ready, healthy, active) = match &r.state {
        None => (
            condition(
                "Ready",
                Some(true),
                "Retired",
                "no longer routed; kept in the history",
            ),
            condition("ContainerHealthy", None, "", ""),
            condition(
                "Active",
                Some(false),
                "NoTraffic",
                "the revision is not routed",
            ),
        ),
        Some(s) => {
            let failed = s.last_failure.as_deref().filter(|_| s.ready == 0);
            let ready = match (s.ever_ready, failed) {
                (true, _) => condition("Ready", Some(true), "", ""),
                (false, _) if s.image_problem.is_some() => {
                    let (reason, why) = s.image_problem.clone().unwrap_or_default();
                    condition("Ready", Some(false), reason, &why)
                }
                (false, Some(why)) => condition("Ready", Some(false), "ExitCode", why),
                (false, None) => condition(
                    "Ready",
                    None,
                    "Deploying",
                    "not started yet: it starts with its first request",
                ),
            };
            let healthy = match failed {
                Some(why) => condition("ContainerHealthy", Some(false), "ExitCode", why),
                None => condition(
                    "ContainerHealthy",
                    Some(s.ever_ready).filter(|b| *b),
                    "",
                    "",
                ),
            };
            let active = if s.ready > 0 {
                condition("Active", Some(true), "", "")
            } else {
                condition(
                    "Active",
                    Some(false),
                    "NoTraffic",
                    "scaled to zero: the activator holds requests while an instance starts",
                )
            };
            (ready, healthy, active)
        }
    };
    let (actual, desired) = r.state.as_ref().map_or((0, 0), |s| (s.ready, s.wanted));
    // Ember's own: what the autoscaler saw and decided.
    let autoscaler = r.state.as_ref().map(|s| {
        json!({
            "observedLoad": s.observed.load,
            "requestsInFlight": s.observed.in_flight,
            "requestsWaiting": s.observed.waiting,
            "eventsWaiting": s.observed.backlog,
            "stableAverage": s.decision.map_or(0.0, |d| d.stable),
            "panicAverage": s.decision.map_or(0.0, |d| d.panic),
            "panicMode": s.decision.is_some_and(|d| d.panicking),
            "decided": s.decision.map_or(0, |d| d.desired),
            "desiredReplicas": s.wanted,
            "actualReplicas": s.ready,
        })
    });
    json!({
        "apiVersion": GROUP_VERSION,
        "kind": "Revision",
        "metadata": {
            "name": r.name,
            "namespace": r.namespace,
            "creationTimestamp": time(r.created),
            "labels": {
                "serving.knative.dev/service": r.service,
                "serving.knative.dev/configuration": r.service,
                "serving.knative.dev/configurationGeneration": r.generation.to_string(),
            },
        },
        "spec": r.template["spec"],
        "status": {
            "observedGeneration": 1,
            "conditions": [active, healthy, ready, condition("ResourcesAvailable", Some(true), "", "")],
            "actualReplicas": actual,
            "desiredReplicas": desired,
            "notApplied": not_applied(&r.template),
            "autoscaler": autoscaler,
            "containerStatuses": r.state.as_ref().and_then(|s| s.image_digest.as_ref()).map(|d| json!([{
                "name": r.template["spec"]["containers"][0]["name"].as_str().unwrap_or("user-container"),
                "imageDigest": d,
            }])),
        },
    })
}

/// The traffic of a Route, as Knative writes it (each tag with its own URL).
pub fn traffic_json(
    traffic: &[ember_serving::TrafficStatus],
    url: &dyn Fn(&str) -> String,
    name: &str,
) -> Vec<Value> {
    traffic
        .iter()
        .map(|t| {
            let mut v = json!({
                "revisionName": t.revision,
                "percent": t.percent,
                "latestRevision": t.latest,
            });
            if let Some(tag) = &t.tag {
                v["tag"] = tag.as_str().into();
                v["url"] = url(&format!("{tag}-{name}")).into();
            }
            v
        })
        .collect()
}

/// A Route written on its own.
fn standalone_route(
    services: &Services,
    listen: SocketAddr,
    namespace: &str,
    name: &str,
) -> Option<Value> {
    let traffic = services.serving.route_traffic(namespace, name)?;
    let url = |host: &str| {
        format!(
            "http://{host}.{namespace}.{}:{}",
            services.domain(),
            listen.port()
        )
    };
    let ready = traffic.iter().all(|t| {
        services
            .serving
            .revision(namespace, &t.revision)
            .is_some_and(|r| r.is_ready())
    });
    Some(json!({
        "apiVersion": GROUP_VERSION,
        "kind": "Route",
        "metadata": {"name": name, "namespace": namespace},
        "status": {
            "url": url(name),
            "address": {"url": url(name)},
            "traffic": traffic_json(&traffic, &url, name),
            "conditions": [
                condition("AllTrafficAssigned", Some(true), "", ""),
                condition("IngressReady", Some(true), "", "Ember's listener routes by Host"),
                if ready {
                    condition("Ready", Some(true), "", "")
                } else {
                    condition("Ready", None, "RevisionMissing", "a target has not been ready yet")
                },
            ],
        },
    }))
}

fn per_service(
    services: &Services,
    listen: SocketAddr,
    kind: &str,
    namespace: &str,
    service: &str,
) -> Option<Value> {
    let st = services.serving.status(namespace, service)?;
    let url = |host: &str| {
        format!(
            "http://{host}.{namespace}.{}:{}",
            services.domain(),
            listen.port()
        )
    };
    let ready = match &st.latest_ready {
        Some(r) => condition("Ready", Some(true), "", &format!("revision {r} is ready")),
        None => condition(
            "Ready",
            None,
            "RevisionMissing",
            "no revision has been ready yet",
        ),
    };
    let metadata = json!({
        "name": service,
        "namespace": namespace,
        "labels": {"serving.knative.dev/service": service},
    });
    Some(match kind {
        "Route" => {
            let traffic = traffic_json(&st.traffic, &url, service);
            json!({
                "apiVersion": GROUP_VERSION,
                "kind": "Route",
                "metadata": metadata,
                "status": {
                    "url": url(service),
                    "address": {"url": url(service)},
                    "traffic": traffic,
                    "conditions": [
                        condition("AllTrafficAssigned", Some(true), "", ""),
                        condition("IngressReady", Some(true), "", "Ember's listener routes by Host"),
                        ready,
                    ],
                },
            })
        }
        _ => json!({
            "apiVersion": GROUP_VERSION,
            "kind": "Configuration",
            "metadata": metadata,
            "status": {
                "latestCreatedRevisionName": st.latest_created,
                "latestReadyRevisionName": st.latest_ready,
                "conditions": [ready],
            },
        }),
    })
}
