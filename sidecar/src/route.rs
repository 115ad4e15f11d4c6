//! The routing table: which endpoint serves which path, each with its metric handles.
//!
//! [`service`](crate::service) looks requests up in it and swaps it whole on reload;
//! [`forward`](crate::forward) reads the [`Route`] a request matched. It lives apart from
//! both so that the request path depends on the forwarder and never the other way round.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::{Endpoint, Endpoints};
use crate::metrics::{EndpointMetrics, Metrics, QueueMetrics};

/// An endpoint with its metric handles.
#[derive(Debug)]
pub struct Route {
    /// The validated endpoint.
    pub endpoint: Arc<Endpoint>,
    /// Its metric handles.
    pub metrics: EndpointMetrics,
    /// Its queue-mode metric handles (queue-mode endpoints only).
    pub queue_metrics: Option<QueueMetrics>,
}

/// One configuration snapshot: the routes by path.
#[derive(Debug)]
pub struct Routes {
    by_path: HashMap<String, Route>,
    unmatched: EndpointMetrics,
}

impl Routes {
    /// The routes of one endpoint table. Metric handles are resolved here, once per load, so
    /// a request never builds a label set.
    pub fn new(endpoints: &Endpoints, metrics: &Metrics) -> Routes {
        let by_path = endpoints
            .iter()
            .map(|endpoint| {
                let route = Route {
                    endpoint: Arc::clone(endpoint),
                    metrics: metrics.endpoint(&endpoint.name),
                    queue_metrics: endpoint.queued().then(|| metrics.queue(&endpoint.name)),
                };
                (endpoint.path.clone(), route)
            })
            .collect();
        Routes {
            by_path,
            unmatched: metrics.endpoint(""),
        }
    }

    /// The route serving `path`, if any.
    pub fn get(&self, path: &str) -> Option<&Route> {
        self.by_path.get(path)
    }

    /// The metric handles of requests no route serves (`endpoint = ""`).
    pub fn unmatched(&self) -> &EndpointMetrics {
        &self.unmatched
    }

    /// The endpoints of this snapshot.
    pub fn endpoints(&self) -> impl Iterator<Item = &Arc<Endpoint>> {
        self.by_path.values().map(|route| &route.endpoint)
    }
}
