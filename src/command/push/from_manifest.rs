//! From a manifest app to the deploy layer's [`AppSpec`]: production routes, instance counts,
//! code source, and the `render` closure that hands a [`RenderRequest`] back to the manifest
//! layer's renderer.
//!
//! Route rules follow `cf push`: `no-route` wins, then explicit `routes:`, then
//! `random-route`, else the default route.
//!
//! Depends on: manifest (model, renderer), deploy::request. Must not: read files or call the API.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::manifest::{AppManifest, RenderOverrides};

use crate::deploy::api::AppSource;
use crate::deploy::request::{AppSpec, RenderRequest, Renderer, RouteSpec};

/// The production routes the manifest asks for.
pub fn route_spec(app: &AppManifest) -> RouteSpec {
    if app.no_route {
        RouteSpec::NoRoute
    } else if !app.routes.is_empty() {
        RouteSpec::Routes(app.routes.iter().map(|r| r.route.clone()).collect())
    } else if app.random_route {
        RouteSpec::Random
    } else {
        RouteSpec::Default
    }
}

/// Instance counts the manifest sets, by process type (`web` from the `web` process entry,
/// else the app's top-level `instances`). Process types without a count are left out.
pub fn instances(app: &AppManifest) -> BTreeMap<String, u32> {
    let mut out = BTreeMap::new();
    for p in &app.processes {
        if let Some(n) = p.instances {
            out.insert(p.kind.clone(), n);
        }
    }
    if !out.contains_key("web")
        && let Some(n) = app.instances
    {
        out.insert("web".to_string(), n);
    }
    out
}

/// The manifest layer's overrides for a deploy-layer render request.
///
/// `no_route` renders `no-route: true`; `random_route` keeps the manifest's own route keys
/// (`random-route: true`); otherwise the given routes replace `routes:` (none given: the
/// manifest's route keys are kept, which renders the default route).
pub fn overrides(req: &RenderRequest) -> RenderOverrides {
    let routes = if req.no_route {
        Some(Vec::new())
    } else if req.random_route || req.routes.is_empty() {
        None
    } else {
        Some(req.routes.clone())
    };
    RenderOverrides {
        name: Some(req.name.clone()),
        routes,
        instances: None,
        process_instances: req.instances.clone(),
        extra_labels: req.labels.clone(),
        extra_annotations: req.annotations.clone(),
    }
}

/// A renderer for `app`: renders its manifest entry with the request's overrides. When the
/// requested routes are exactly the manifest's, its `routes:` entries are kept as written (with
/// their `protocol` and `options`).
pub fn renderer(app: &AppManifest) -> Renderer {
    let app = app.clone();
    let own: BTreeSet<String> = app.routes.iter().map(|r| r.route.clone()).collect();
    Arc::new(move |req: &RenderRequest| {
        let mut ov = overrides(req);
        if let Some(routes) = &ov.routes
            && !routes.is_empty()
            && routes.iter().cloned().collect::<BTreeSet<_>>() == own
        {
            ov.routes = None;
        }
        app.render(&ov)
            .map_err(|e| format!("cannot render the manifest of app '{}': {e}", app.name))
    })
}

/// The [`AppSpec`] of a manifest app whose code comes from `source` (the scanned bits, or the
/// docker image of [`docker_source`]).
pub fn app_spec<B>(app: &AppManifest, source: AppSource<B>) -> AppSpec<B> {
    AppSpec {
        name: app.name.clone(),
        routes: route_spec(app),
        instances: instances(app),
        memory_mb: app.memory_mb(),
        source,
        cnb: app.lifecycle.as_deref() == Some("cnb"),
        render: renderer(app),
    }
}

/// The docker source of a manifest app, `None` for a bits app.
pub fn docker_source<B>(app: &AppManifest) -> Option<AppSource<B>> {
    app.docker.as_ref().map(|d| AppSource::Docker {
        image: d.image.clone(),
        username: d.username.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::RouteSpec as ManifestRoute;

    fn app() -> AppManifest {
        let mut m = crate::manifest::without_file("web", &crate::manifest::LoadOptions::default());
        m.applications.remove(0)
    }

    #[test]
    fn routes_follow_cf_push_precedence() {
        let mut a = app();
        assert_eq!(route_spec(&a), RouteSpec::Default);
        a.random_route = true;
        assert_eq!(route_spec(&a), RouteSpec::Random);
        a.routes = vec![ManifestRoute::new("web.example.com/api")];
        assert_eq!(
            route_spec(&a),
            RouteSpec::Routes(vec!["web.example.com/api".into()])
        );
        a.no_route = true;
        assert_eq!(route_spec(&a), RouteSpec::NoRoute);
    }

    #[test]
    fn the_manifests_own_routes_keep_their_protocol() {
        let mut a = app();
        let mut r = ManifestRoute::new("web.example.com");
        r.protocol = Some("http2".into());
        a.routes = vec![r];
        let render = renderer(&a);
        let own = render(&RenderRequest {
            name: "web".into(),
            routes: vec!["web.example.com".into()],
            ..RenderRequest::default()
        })
        .unwrap();
        assert!(own.contains("protocol: http2"), "{own}");
        let temp = render(&RenderRequest {
            name: "web-candidate".into(),
            routes: vec!["web-temp.example.com".into()],
            ..RenderRequest::default()
        })
        .unwrap();
        assert!(temp.contains("route: web-temp.example.com"), "{temp}");
        assert!(!temp.contains("route: web.example.com"), "{temp}");
    }

    #[test]
    fn top_level_instances_count_for_web() {
        let mut a = app();
        assert!(instances(&a).is_empty());
        a.instances = Some(3);
        assert_eq!(instances(&a), BTreeMap::from([("web".to_string(), 3)]));
    }

    #[test]
    fn render_request_maps_onto_overrides() {
        let req = RenderRequest {
            name: "web-candidate".into(),
            routes: vec!["web-temp.example.com".into()],
            labels: BTreeMap::from([("zero-downtime.cf/role".into(), "candidate".into())]),
            annotations: BTreeMap::from([("zero-downtime.cf/app".into(), "web".into())]),
            instances: BTreeMap::from([("web".into(), 4)]),
            ..RenderRequest::default()
        };
        let yaml = (renderer(&app()))(&req).unwrap();
        assert!(yaml.contains("- name: web-candidate\n"), "{yaml}");
        assert!(yaml.contains("route: web-temp.example.com"), "{yaml}");
        assert!(yaml.contains("instances: 4"), "{yaml}");
        assert!(yaml.contains("zero-downtime.cf/role: candidate"), "{yaml}");
        assert!(yaml.contains("zero-downtime.cf/app: web"), "{yaml}");

        let no_route = overrides(&RenderRequest {
            name: "x".into(),
            no_route: true,
            ..RenderRequest::default()
        });
        assert_eq!(no_route.routes, Some(Vec::new()));
        let random = overrides(&RenderRequest {
            name: "x".into(),
            random_route: true,
            routes: vec!["ignored.example.com".into()],
            ..RenderRequest::default()
        });
        assert_eq!(random.routes, None);
    }
}
