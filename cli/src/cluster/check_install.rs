//! The checks of `hookguard check`, against what the chart (`charts/hookguard`) installs.
//!
//! The install is found through the operator Deployment in `--operator-namespace` (the
//! chart's labels `app.kubernetes.io/part-of: hookguard`, `app.kubernetes.io/component:
//! operator`); its arguments name the Lease, the `MutatingWebhookConfiguration`, the webhook
//! Service and the dedup store, so a release of any name is checked by what it runs. Without
//! the Deployment the operator's defaults stand in (release `hookguard`).
//!
//! Each check reads what it needs on its own, so one missing object fails its own checks
//! only.

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};

use super::check::{Category, CheckResult, Results};
use crate::common::Context;

/// The CRD's name.
const CRD_NAME: &str = "webhookendpoints.hookguard.dev";
/// The version the CLI and the operator speak.
const CRD_VERSION: &str = "v1alpha1";
/// The chart's labels on the operator Deployment.
const OPERATOR_SELECTOR: &str =
    "app.kubernetes.io/part-of=hookguard,app.kubernetes.io/component=operator";
/// The one webhook in the configuration.
const WEBHOOK_NAME: &str = "inject.hookguard.dev";

/// What one check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// It holds.
    Pass,
    /// It works, but look at this.
    Warn(String),
    /// It does not hold: this is why.
    Fail(String),
}

/// The install as the operator Deployment describes it.
#[derive(Debug, Clone)]
struct Install {
    namespace: String,
    deployment: Option<Deployment>,
    lease_name: String,
    config_name: String,
    service_name: String,
    store: Option<String>,
}

impl Install {
    fn from_deployment(namespace: &str, deployment: Option<Deployment>) -> Install {
        let args: Vec<String> = deployment
            .as_ref()
            .and_then(|d| d.spec.as_ref())
            .and_then(|spec| spec.template.spec.as_ref())
            .and_then(|pod| pod.containers.first())
            .and_then(|container| container.args.clone())
            .unwrap_or_default();
        let flag = |name: &str| {
            let prefix = format!("--{name}=");
            args.iter()
                .find_map(|arg| arg.strip_prefix(&prefix).map(str::to_owned))
        };
        Install {
            namespace: namespace.to_owned(),
            lease_name: flag("lease-name").unwrap_or_else(|| "hookguard-operator".to_owned()),
            config_name: flag("webhook-config-name").unwrap_or_else(|| "hookguard".to_owned()),
            service_name: flag("webhook-service").unwrap_or_else(|| "hookguard-webhook".to_owned()),
            store: flag("sidecar-store"),
            deployment,
        }
    }

    fn policy_name(&self) -> String {
        format!("{}-require-sidecar", self.config_name)
    }
}

/// Runs every check once.
pub async fn run_all(ctx: &Context, operator_namespace: &str) -> Results {
    let mut categories = Vec::new();
    let client = match ctx.kube.client().await {
        Ok(client) => client,
        Err(error) => {
            categories.push(Category {
                name: "kubernetes-api",
                checks: vec![CheckResult::new(
                    "api",
                    "can initialize the client",
                    Finding::Fail(format!("{error:#}")),
                )],
            });
            return finish(categories);
        }
    };
    let (client, namespace) = client;
    let api = match client.apiserver_version().await {
        Ok(_) => Finding::Pass,
        Err(error) => Finding::Fail(format!("{error}")),
    };
    let reachable = api == Finding::Pass;
    categories.push(Category {
        name: "kubernetes-api",
        checks: vec![CheckResult::new("api", "can query the Kubernetes API", api)],
    });
    if !reachable {
        return finish(categories);
    }

    categories.push(Category {
        name: "hookguard-crd",
        checks: crd_checks(&client).await,
    });

    let (deployment, found) = find_deployment(&client, operator_namespace).await;
    let install = Install::from_deployment(operator_namespace, deployment);
    let mut operator = vec![CheckResult::new(
        "operator-deployment",
        format!("the operator Deployment exists in {operator_namespace}"),
        found,
    )];
    operator.push(CheckResult::new(
        "operator-ready",
        "the operator Deployment has ready replicas",
        deployment_ready(install.deployment.as_ref()),
    ));
    operator.push(CheckResult::new(
        "operator-leader",
        format!(
            "an operator replica holds the leader Lease {}",
            install.lease_name
        ),
        leader(&client, &install).await,
    ));
    categories.push(Category {
        name: "hookguard-operator",
        checks: operator,
    });

    categories.push(Category {
        name: "hookguard-webhook",
        checks: webhook_checks(&client, &install).await,
    });
    categories.push(Category {
        name: "hookguard-policy",
        checks: policy_checks(&client, &install).await,
    });
    categories.push(Category {
        name: "hookguard-rbac",
        checks: rbac_checks(&client, &namespace, ctx.kube.all_namespaces).await,
    });
    categories.push(Category {
        name: "hookguard-store",
        checks: vec![store_check(&client, &install).await],
    });
    finish(categories)
}

fn finish(categories: Vec<Category>) -> Results {
    let success = categories
        .iter()
        .flat_map(|category| &category.checks)
        .all(|check| check.result != super::check::Outcome::Error);
    Results {
        success,
        categories,
    }
}

fn api_error(what: &str, error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) if status.code == 403 => {
            format!("you may not read {what}: {}", status.message)
        }
        other => format!("reading {what}: {other}"),
    }
}

async fn crd_checks(client: &Client) -> Vec<CheckResult> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let exists = "the WebhookEndpoint CRD (webhookendpoints.hookguard.dev) exists";
    let established = "the CRD is Established";
    let version = format!("the CRD serves hookguard.dev/{CRD_VERSION}");
    let crd = match crds.get_opt(CRD_NAME).await {
        Ok(Some(crd)) => crd,
        // Many users may not read CRDs: what the API serves answers the same questions.
        Err(kube::Error::Api(status)) if status.code == 403 => {
            return crd_by_discovery(client, exists, established, &version).await;
        }
        found => {
            let error = match found {
                Ok(_) => format!(
                    "no CustomResourceDefinition {CRD_NAME}: install the chart (crds.install=true) or kubectl apply -f crds/"
                ),
                Err(error) => api_error("CustomResourceDefinitions", &error),
            };
            let skipped = || Finding::Fail("the CRD is missing".to_owned());
            return vec![
                CheckResult::new("crd-exists", exists, Finding::Fail(error)),
                CheckResult::new("crd-established", established, skipped()),
                CheckResult::new("crd-version", version, skipped()),
            ];
        }
    };
    let conditions = crd
        .status
        .as_ref()
        .and_then(|status| status.conditions.clone())
        .unwrap_or_default();
    let established_finding = match conditions.iter().find(|c| c.type_ == "Established") {
        Some(c) if c.status == "True" => Finding::Pass,
        Some(c) => Finding::Fail(format!(
            "Established is {}: {}: {}",
            c.status,
            c.reason.as_deref().unwrap_or_default(),
            c.message.as_deref().unwrap_or_default()
        )),
        None => Finding::Fail("the API server has not established it yet".to_owned()),
    };
    let served: Vec<&str> = crd
        .spec
        .versions
        .iter()
        .filter(|v| v.served)
        .map(|v| v.name.as_str())
        .collect();
    let version_finding = if served.contains(&CRD_VERSION) {
        Finding::Pass
    } else {
        Finding::Fail(format!(
            "it serves {}: upgrade the chart to one whose CRD serves {CRD_VERSION}",
            if served.is_empty() {
                "no version".to_owned()
            } else {
                served.join(", ")
            }
        ))
    };
    vec![
        CheckResult::new("crd-exists", exists, Finding::Pass),
        CheckResult::new("crd-established", established, established_finding),
        CheckResult::new("crd-version", version, version_finding),
    ]
}

/// The CRD checks from API discovery, for a user who may not read CRDs.
async fn crd_by_discovery(
    client: &Client,
    exists: &str,
    established: &str,
    version: &str,
) -> Vec<CheckResult> {
    let served = client
        .list_api_group_resources(&format!("hookguard.dev/{CRD_VERSION}"))
        .await
        .map(|list| list.resources.iter().any(|r| r.name == "webhookendpoints"));
    let finding = match served {
        Ok(true) => Finding::Pass,
        Ok(false) | Err(kube::Error::Api(_)) => Finding::Fail(format!(
            "the API serves no hookguard.dev/{CRD_VERSION} webhookendpoints (you may not read CRDs, so this comes from discovery): install the CRD"
        )),
        Err(error) => Finding::Fail(format!("API discovery: {error}")),
    };
    vec![
        CheckResult::new("crd-exists", exists, finding.clone()),
        CheckResult::new("crd-established", established, finding.clone()),
        CheckResult::new("crd-version", version, finding),
    ]
}

async fn find_deployment(client: &Client, namespace: &str) -> (Option<Deployment>, Finding) {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    match deployments
        .list(&ListParams::default().labels(OPERATOR_SELECTOR))
        .await
    {
        Ok(list) => {
            let mut items = list.items;
            items.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
            match items.len() {
                0 => (
                    None,
                    Finding::Fail(format!(
                        "no Deployment labelled {OPERATOR_SELECTOR} in namespace {namespace}: install the chart there, or pass --operator-namespace"
                    )),
                ),
                1 => (items.pop(), Finding::Pass),
                n => {
                    let names: Vec<String> = items
                        .iter()
                        .filter_map(|d| d.metadata.name.clone())
                        .collect();
                    (
                        items.into_iter().next(),
                        Finding::Warn(format!(
                            "{n} operator Deployments ({}): checking the first; two releases in one namespace fight over the webhook",
                            names.join(", ")
                        )),
                    )
                }
            }
        }
        Err(error) => (None, Finding::Fail(api_error("Deployments", &error))),
    }
}

fn deployment_ready(deployment: Option<&Deployment>) -> Finding {
    let Some(deployment) = deployment else {
        return Finding::Fail("no operator Deployment".to_owned());
    };
    let name = deployment.metadata.name.as_deref().unwrap_or_default();
    let wanted = deployment
        .spec
        .as_ref()
        .and_then(|spec| spec.replicas)
        .unwrap_or(1);
    let ready = deployment
        .status
        .as_ref()
        .and_then(|status| status.ready_replicas)
        .unwrap_or(0);
    if ready == 0 {
        Finding::Fail(format!(
            "Deployment {name} has 0 of {wanted} replicas ready: kubectl describe deployment {name} -n {}, and its pods' logs",
            deployment.metadata.namespace.as_deref().unwrap_or_default()
        ))
    } else if ready < wanted {
        Finding::Warn(format!(
            "Deployment {name} has {ready} of {wanted} replicas ready"
        ))
    } else {
        Finding::Pass
    }
}

async fn leader(client: &Client, install: &Install) -> Finding {
    let leases: Api<Lease> = Api::namespaced(client.clone(), &install.namespace);
    let lease = match leases.get_opt(&install.lease_name).await {
        Ok(Some(lease)) => lease,
        Ok(None) => {
            return Finding::Fail(format!(
                "no Lease {} in {}: no replica has become leader, so no endpoint is reconciled; check the operator's logs",
                install.lease_name, install.namespace
            ));
        }
        Err(error) => return Finding::Fail(api_error("Leases", &error)),
    };
    let spec = lease.spec.unwrap_or_default();
    let Some(holder) = spec.holder_identity.filter(|holder| !holder.is_empty()) else {
        return Finding::Fail(format!(
            "Lease {} has no holder: no replica is reconciling",
            install.lease_name
        ));
    };
    let (Some(renewed), Some(duration)) = (spec.renew_time, spec.lease_duration_seconds) else {
        return Finding::Warn(format!(
            "Lease {} is held by {holder} but records no renewal time",
            install.lease_name
        ));
    };
    let expires = renewed
        .0
        .checked_add(SignedDuration::from_secs(i64::from(duration)))
        .unwrap_or(renewed.0);
    if expires < Timestamp::now() {
        Finding::Fail(format!(
            "Lease {} held by {holder} expired at {expires}: its holder stopped renewing it and no replica took over",
            install.lease_name
        ))
    } else {
        Finding::Pass
    }
}

async fn webhook_checks(client: &Client, install: &Install) -> Vec<CheckResult> {
    let configs: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let registered = format!(
        "the MutatingWebhookConfiguration {} is registered",
        install.config_name
    );
    let ca = "the webhook has a CA bundle";
    let service_description = format!(
        "the webhook Service {}/{} has ready endpoints",
        install.namespace, install.service_name
    );
    let hook = match configs.get_opt(&install.config_name).await {
        Ok(Some(config)) => config
            .webhooks
            .unwrap_or_default()
            .into_iter()
            .find(|hook| hook.name == WEBHOOK_NAME)
            .ok_or_else(|| {
                format!(
                    "MutatingWebhookConfiguration {} has no webhook {WEBHOOK_NAME}",
                    install.config_name
                )
            }),
        Ok(None) => Err(format!(
            "no MutatingWebhookConfiguration {}: pods are never injected; reinstall the chart",
            install.config_name
        )),
        Err(error) => Err(api_error("MutatingWebhookConfigurations", &error)),
    };
    let hook = match hook {
        Ok(hook) => hook,
        Err(error) => {
            let skipped = || Finding::Fail("the webhook is not registered".to_owned());
            return vec![
                CheckResult::new("webhook-config", registered, Finding::Fail(error)),
                CheckResult::new("webhook-ca-bundle", ca, skipped()),
                CheckResult::new("webhook-service", service_description, skipped()),
            ];
        }
    };
    let ca_finding = match &hook.client_config.ca_bundle {
        Some(bundle) if !bundle.0.is_empty() => Finding::Pass,
        _ => Finding::Fail(format!(
            "webhook {WEBHOOK_NAME} of {} has an empty caBundle, so the API server cannot call it and (failurePolicy Ignore) pods start without the sidecar: the operator writes it at start-up (self cert mode) or cert-manager's CA injector does; check the operator's logs",
            install.config_name
        )),
    };
    let (service_description, service_finding) = match &hook.client_config.service {
        Some(service) => (
            format!(
                "the webhook Service {}/{} has ready endpoints",
                service.namespace, service.name
            ),
            service_ready(client, &service.namespace, &service.name, "the operator").await,
        ),
        None => match &hook.client_config.url {
            Some(url) => (
                "the webhook is reachable".to_owned(),
                Finding::Warn(format!(
                    "it calls {url} directly (an operator run outside the cluster with --webhook-url): not checked"
                )),
            ),
            None => (
                service_description,
                Finding::Fail("its clientConfig names neither a Service nor a URL".to_owned()),
            ),
        },
    };
    vec![
        CheckResult::new("webhook-config", registered, Finding::Pass),
        CheckResult::new("webhook-ca-bundle", ca, ca_finding),
        CheckResult::new("webhook-service", service_description, service_finding),
    ]
}

/// Whether Service `namespace/name` exists and one of its `EndpointSlices` has a ready
/// endpoint.
async fn service_ready(client: &Client, namespace: &str, name: &str, backing: &str) -> Finding {
    let services: Api<Service> = Api::namespaced(client.clone(), namespace);
    match services.get_opt(name).await {
        Ok(Some(_)) => {}
        Ok(None) => return Finding::Fail(format!("no Service {name} in {namespace}")),
        Err(error) => return Finding::Fail(api_error("Services", &error)),
    }
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), namespace);
    let list = match slices
        .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={name}")))
        .await
    {
        Ok(list) => list.items,
        Err(error) => return Finding::Fail(api_error("EndpointSlices", &error)),
    };
    let (mut ready, mut total) = (0, 0);
    for endpoint in list.iter().flat_map(|slice| &slice.endpoints) {
        total += 1;
        // An absent `ready` means ready (discovery.k8s.io/v1).
        if endpoint
            .conditions
            .as_ref()
            .and_then(|conditions| conditions.ready)
            .unwrap_or(true)
        {
            ready += 1;
        }
    }
    if ready > 0 {
        Finding::Pass
    } else {
        Finding::Fail(format!(
            "Service {namespace}/{name} has {} ready endpoint{} of {total}: {backing}'s pods are not ready",
            ready,
            if ready == 1 { "" } else { "s" }
        ))
    }
}

async fn policy_checks(client: &Client, install: &Install) -> Vec<CheckResult> {
    let name = install.policy_name();
    let policies: Api<ValidatingAdmissionPolicy> = Api::all(client.clone());
    let bindings: Api<ValidatingAdmissionPolicyBinding> = Api::all(client.clone());
    let policy = match policies.get_opt(&name).await {
        Ok(Some(_)) => Finding::Pass,
        Ok(None) => Finding::Warn(format!(
            "no ValidatingAdmissionPolicy {name}: while the operator is down, pods labelled hookguard.dev/inject=true start without the sidecar (webhook.validatingAdmissionPolicy.enabled=true installs it)"
        )),
        Err(error) => Finding::Warn(api_error("ValidatingAdmissionPolicies", &error)),
    };
    let binding = match bindings.get_opt(&name).await {
        Ok(Some(binding)) => {
            let actions = binding
                .spec
                .and_then(|spec| spec.validation_actions)
                .unwrap_or_default();
            if actions.iter().any(|action| action == "Deny") {
                Finding::Pass
            } else {
                Finding::Warn(format!(
                    "binding {name} has validationActions {actions:?}: without Deny the policy only reports"
                ))
            }
        }
        Ok(None) => Finding::Warn(format!(
            "no ValidatingAdmissionPolicyBinding {name}: the policy is not in force"
        )),
        Err(error) => Finding::Warn(api_error("ValidatingAdmissionPolicyBindings", &error)),
    };
    vec![
        CheckResult::new(
            "policy",
            format!("the ValidatingAdmissionPolicy {name} is installed"),
            policy,
        ),
        CheckResult::new("policy-binding", "the policy is bound with Deny", binding),
    ]
}

async fn rbac_checks(client: &Client, namespace: &str, all: bool) -> Vec<CheckResult> {
    let scope = if all {
        "in every namespace".to_owned()
    } else {
        format!("in {namespace}")
    };
    let questions = [
        (
            "rbac-endpoints",
            "hookguard.dev",
            "webhookendpoints",
            None,
            "get",
            "status, check-inject and tail",
        ),
        (
            "rbac-secrets",
            "",
            "secrets",
            None,
            "get",
            "status and secret",
        ),
        (
            "rbac-portforward",
            "",
            "pods",
            Some("portforward"),
            "create",
            "status, tail and dlq to reach sidecars",
        ),
    ];
    let mut checks = Vec::new();
    for (code, group, resource, subresource, verb, needed_by) in questions {
        let what =
            subresource.map_or_else(|| resource.to_owned(), |sub| format!("{resource}/{sub}"));
        let description = format!("you can {verb} {what} {scope}");
        let finding = match can_i(
            client,
            group,
            resource,
            subresource,
            verb,
            (!all).then_some(namespace),
        )
        .await
        {
            Ok(true) => Finding::Pass,
            Ok(false) => Finding::Warn(format!(
                "you may not {verb} {what} {scope}: {needed_by} need it"
            )),
            Err(error) => Finding::Warn(format!("could not ask the API server: {error:#}")),
        };
        checks.push(CheckResult::new(code, description, finding));
    }
    checks
}

async fn can_i(
    client: &Client,
    group: &str,
    resource: &str,
    subresource: Option<&str>,
    verb: &str,
    namespace: Option<&str>,
) -> anyhow::Result<bool> {
    let reviews: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                group: Some(group.to_owned()),
                resource: Some(resource.to_owned()),
                subresource: subresource.map(str::to_owned),
                verb: Some(verb.to_owned()),
                namespace: namespace.map(str::to_owned),
                ..ResourceAttributes::default()
            }),
            ..SelfSubjectAccessReviewSpec::default()
        },
        ..SelfSubjectAccessReview::default()
    };
    let answer = reviews.create(&PostParams::default(), &review).await?;
    Ok(answer.status.is_some_and(|status| status.allowed))
}

/// The bundled Redis (`redis://<release>-redis.<ns>.svc:6379/0`) has a ready endpoint; any
/// other store cannot be probed from here.
async fn store_check(client: &Client, install: &Install) -> CheckResult {
    let code = "store";
    let Some(store) = &install.store else {
        return CheckResult::new(
            code,
            "the dedup store is reachable",
            Finding::Warn(
                "unknown: no operator Deployment names the store (--sidecar-store)".to_owned(),
            ),
        );
    };
    let host = store
        .split_once("://")
        .map_or(store.as_str(), |(_, rest)| rest)
        .split(['/', ':', ','])
        .next()
        .unwrap_or_default();
    let bundled = host
        .strip_suffix(".svc")
        .and_then(|rest| rest.split_once('.'))
        .filter(|(name, namespace)| name.ends_with("-redis") && *namespace == install.namespace);
    match bundled {
        Some((name, namespace)) => CheckResult::new(
            code,
            format!("the bundled Redis Service {namespace}/{name} has ready endpoints"),
            service_ready(client, namespace, name, "Redis").await,
        ),
        None => CheckResult::new(
            code,
            "the dedup store is reachable",
            Finding::Warn(format!(
                "unknown: the sidecars use {} (not the bundled Redis), which is not probed from here",
                redact(store)
            )),
        ),
    }
}

/// A store URL without a password, should one be in it.
fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((_, host)) => format!("{scheme}://***@{host}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_install_is_read_from_the_deployment_args() {
        let deployment: Deployment = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "shop-hookguard"},
            "spec": {"selector": {}, "template": {"spec": {"containers": [{"name": "operator", "args": [
                "run", "--lease-name=shop-hookguard-operator", "--webhook-config-name=shop-hookguard",
                "--webhook-service=shop-hookguard-webhook", "--sidecar-store=redis://shop-hookguard-redis.hg.svc:6379/0",
            ]}]}}},
        }))
        .unwrap();
        let install = Install::from_deployment("hg", Some(deployment));
        assert_eq!(install.lease_name, "shop-hookguard-operator");
        assert_eq!(install.config_name, "shop-hookguard");
        assert_eq!(install.policy_name(), "shop-hookguard-require-sidecar");
        assert_eq!(install.service_name, "shop-hookguard-webhook");
        let defaults = Install::from_deployment("hookguard-system", None);
        assert_eq!(defaults.lease_name, "hookguard-operator");
        assert_eq!(defaults.config_name, "hookguard");
        assert_eq!(redact("redis://u:pw@r:6379/0"), "redis://***@r:6379/0");
    }

    #[test]
    fn readiness_counts_replicas() {
        let deployment = |ready: i32| -> Deployment {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "op", "namespace": "hg"},
                "spec": {"replicas": 2, "selector": {}, "template": {}},
                "status": {"readyReplicas": ready},
            }))
            .unwrap()
        };
        assert!(matches!(
            deployment_ready(Some(&deployment(0))),
            Finding::Fail(_)
        ));
        assert!(matches!(
            deployment_ready(Some(&deployment(1))),
            Finding::Warn(_)
        ));
        assert_eq!(deployment_ready(Some(&deployment(2))), Finding::Pass);
    }
}
