//! Smoke tests of the test control plane: the behaviours Hookguard's operator relies on (CRD
//! schema and CEL validation, server-side apply, watches, owner-reference garbage collection,
//! RBAC) and the clients the chart tests use (`kubectl`, `helm`), against the real
//! kube-apiserver, etcd and kube-controller-manager. All tests share one control plane, each
//! in its own namespace.

use std::future::Future;
use std::process::Output;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use futures::StreamExt as _;
use hookguard_tests::control_plane::{K8S_VERSION, TestNamespace, with_namespace};
use hookguard_tests::wait::eventually;
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
    PostParams, WatchEvent, WatchParams,
};
use kube::{Api, Client};
use serde_json::json;

/// A small CRD of the tests' own, with a CEL rule on its spec.
const WIDGET_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.smoke.hookguard.dev
spec:
  group: smoke.hookguard.dev
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, listKind: WidgetList}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              required: [size]
              properties:
                size: {type: integer, minimum: 0}
                colour: {type: string}
              x-kubernetes-validations:
                - rule: "self.size <= 5"
                  message: "size must be at most 5"
"#;

const WIDGET_RULE_MESSAGE: &str = "size must be at most 5";

fn widget_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("smoke.hookguard.dev", "v1", "Widget"),
        "widgets",
    )
}

fn widgets(ns: &TestNamespace) -> Api<DynamicObject> {
    Api::namespaced_with(ns.client.clone(), &ns.name, &widget_resource())
}

fn widget(name: &str, spec: &serde_json::Value) -> DynamicObject {
    DynamicObject::new(name, &widget_resource()).data(json!({ "spec": spec }))
}

/// Applies the Widget CRD (idempotent, so every test may call it) and waits until it is
/// established.
async fn ensure_widget_crd(client: &Client) -> anyhow::Result<()> {
    let crd: CustomResourceDefinition = serde_yaml::from_str(WIDGET_CRD)?;
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    crds.patch(
        "widgets.smoke.hookguard.dev",
        &PatchParams::apply("hookguard-smoke"),
        &Patch::Apply(&crd),
    )
    .await
    .context("applying the Widget CRD")?;
    eventually(
        "the Widget CRD is established",
        Duration::from_secs(30),
        || {
            let crds = crds.clone();
            async move {
                let crd = crds.get("widgets.smoke.hookguard.dev").await?;
                let established = crd
                    .status
                    .and_then(|status| status.conditions)
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True");
                Ok(established)
            }
        },
    )
    .await
}

/// The next watch event, within 30 s.
async fn next_event<S>(events: &mut S) -> anyhow::Result<WatchEvent<DynamicObject>>
where
    S: futures::Stream<Item = kube::Result<WatchEvent<DynamicObject>>> + Unpin,
{
    loop {
        let event = tokio::time::timeout(Duration::from_secs(30), events.next())
            .await
            .context("no watch event within 30s")?
            .context("the watch ended")??;
        if !matches!(event, WatchEvent::Bookmark(_)) {
            return Ok(event);
        }
    }
}

/// The API server's status for a failed request.
fn api_status(err: kube::Error) -> anyhow::Result<kube::core::Status> {
    match err {
        kube::Error::Api(status) => Ok(*status),
        other => bail!("expected an error answer from the API server, got {other:?}"),
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn ensure_success(what: &str, output: &Output) -> anyhow::Result<String> {
    ensure!(
        output.status.success(),
        "{what} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(stdout(output))
}

#[tokio::test]
async fn custom_object_create_get_apply_watch_delete() {
    with_namespace("smoke-crd", |ns| async move {
        ensure_widget_crd(&ns.client).await?;
        let api = widgets(&ns);

        let created = api
            .create(
                &PostParams::default(),
                &widget("alpha", &json!({ "size": 3 })),
            )
            .await
            .context("creating a Widget")?;
        let fetched = api.get("alpha").await?;
        assert_eq!(fetched.data["spec"]["size"], 3);
        assert_eq!(fetched.metadata.uid, created.metadata.uid);

        let version = fetched
            .metadata
            .resource_version
            .clone()
            .context("no resourceVersion")?;
        let mut events = api
            .watch(
                &WatchParams::default()
                    .fields("metadata.name=alpha")
                    .timeout(60),
                &version,
            )
            .await?
            .boxed();

        // Server-side apply with a field manager of our own.
        let applied = api
            .patch(
                "alpha",
                &PatchParams::apply("smoke-apply"),
                &Patch::Apply(json!({
                    "apiVersion": "smoke.hookguard.dev/v1",
                    "kind": "Widget",
                    "metadata": { "name": "alpha" },
                    "spec": { "size": 3, "colour": "blue" },
                })),
            )
            .await
            .context("server-side apply")?;
        assert_eq!(applied.data["spec"]["colour"], "blue");
        let managers: Vec<_> = applied
            .metadata
            .managed_fields
            .iter()
            .flatten()
            .filter_map(|entry| entry.manager.as_deref())
            .collect();
        assert!(managers.contains(&"smoke-apply"), "managers: {managers:?}");

        match next_event(&mut events).await? {
            WatchEvent::Modified(object) => assert_eq!(object.data["spec"]["colour"], "blue"),
            other => panic!("expected Modified, got {other:?}"),
        }

        // Another manager may not take the field over without forcing.
        let conflict = api
            .patch(
                "alpha",
                &PatchParams::apply("smoke-other"),
                &Patch::Apply(json!({
                    "apiVersion": "smoke.hookguard.dev/v1",
                    "kind": "Widget",
                    "metadata": { "name": "alpha" },
                    "spec": { "size": 3, "colour": "red" },
                })),
            )
            .await
            .expect_err("a conflicting apply must fail");
        let status = api_status(conflict)?;
        assert!(status.is_conflict(), "{status:?}");
        assert!(status.message.contains("smoke-apply"), "{}", status.message);

        api.delete("alpha", &DeleteParams::default()).await?;
        match next_event(&mut events).await? {
            WatchEvent::Deleted(object) => {
                assert_eq!(object.metadata.name.as_deref(), Some("alpha"));
            }
            other => panic!("expected Deleted, got {other:?}"),
        }
        let gone = api.get_opt("alpha").await?;
        assert!(gone.is_none(), "still there: {gone:?}");
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn cel_rule_rejects_a_bad_object_with_its_message() {
    with_namespace("smoke-cel", |ns| async move {
        ensure_widget_crd(&ns.client).await?;
        let api = widgets(&ns);

        let rejected = api
            .create(
                &PostParams::default(),
                &widget("too-big", &json!({ "size": 7 })),
            )
            .await
            .expect_err("size 7 breaks the CEL rule");
        let status = api_status(rejected)?;
        assert_eq!(status.code, 422, "{status:?}");
        assert!(status.is_invalid(), "{status:?}");
        assert!(
            status.message.contains(WIDGET_RULE_MESSAGE),
            "message: {}",
            status.message
        );

        // The same object within the rule is accepted, so the rule is what rejected it.
        api.create(
            &PostParams::default(),
            &widget("just-right", &json!({ "size": 5 })),
        )
        .await
        .context("a valid Widget")?;
        Ok(())
    })
    .await;
}

/// Creates ConfigMap `owned` controlled by `owner` (an owner reference's apiVersion, kind,
/// name and uid) and `bystander` without owner, awaits `delete_owner`, and waits until the
/// garbage collector has deleted `owned`, and only it.
async fn check_garbage_collection<Fut>(
    ns: &TestNamespace,
    owner: serde_json::Value,
    delete_owner: Fut,
    timeout: Duration,
) -> anyhow::Result<()>
where
    Fut: Future<Output = anyhow::Result<()>>,
{
    let config_maps: Api<ConfigMap> = ns.api();
    let mut reference = owner;
    reference["controller"] = json!(true);
    reference["blockOwnerDeletion"] = json!(true);
    let dependent: ConfigMap = serde_json::from_value(json!({
        "metadata": { "name": "owned", "ownerReferences": [reference] },
        "data": { "k": "v" },
    }))?;
    config_maps
        .create(&PostParams::default(), &dependent)
        .await?;
    config_maps
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({ "metadata": { "name": "bystander" } }))?,
        )
        .await?;

    delete_owner.await?;
    eventually(
        "the garbage collector deletes the owned ConfigMap",
        timeout,
        || {
            let config_maps = config_maps.clone();
            async move { Ok(config_maps.get_opt("owned").await?.is_none()) }
        },
    )
    .await?;
    ensure!(
        config_maps.get_opt("bystander").await?.is_some(),
        "a ConfigMap without owner must stay"
    );
    Ok(())
}

#[tokio::test]
async fn deleting_an_owner_garbage_collects_its_config_map() {
    with_namespace("smoke-gc", |ns| async move {
        let config_maps: Api<ConfigMap> = ns.api();
        let owner = config_maps
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({ "metadata": { "name": "owner" } }))?,
            )
            .await?;
        let uid = owner.metadata.uid.context("owner has no uid")?;
        let delete = async {
            config_maps
                .delete("owner", &DeleteParams::background())
                .await?;
            Ok(())
        };
        let reference =
            json!({ "apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid });
        check_garbage_collection(&ns, reference, delete, Duration::from_secs(60)).await
    })
    .await;
}

/// Hookguard's children are owned by its custom resources. kube-controller-manager's garbage
/// collector starts watching a new CRD's kind only at its next discovery resync (every 30 s),
/// so this takes up to about 45 s after the CRD appears, and so must a test that relies on it.
#[tokio::test]
async fn deleting_a_custom_resource_garbage_collects_its_config_map() {
    with_namespace("smoke-gc-cr", |ns| async move {
        ensure_widget_crd(&ns.client).await?;
        let api = widgets(&ns);
        let owner = api
            .create(
                &PostParams::default(),
                &widget("owner", &json!({ "size": 1 })),
            )
            .await?;
        let uid = owner.metadata.uid.context("owner has no uid")?;
        let delete = async {
            api.delete("owner", &DeleteParams::background()).await?;
            Ok(())
        };
        let reference = json!({
            "apiVersion": "smoke.hookguard.dev/v1", "kind": "Widget", "name": "owner", "uid": uid,
        });
        check_garbage_collection(&ns, reference, delete, Duration::from_secs(120)).await
    })
    .await;
}

/// Creates `ServiceAccount` `reader` with a `Role` that grants get/list/watch on `ConfigMaps` only.
async fn grant_config_map_reader(ns: &TestNamespace) -> anyhow::Result<()> {
    let name = &ns.name;
    ns.api::<ServiceAccount>()
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({ "metadata": { "name": "reader" } }))?,
        )
        .await?;
    ns.api::<Role>()
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": { "name": "config-map-reader" },
                "rules": [{
                    "apiGroups": [""], "resources": ["configmaps"],
                    "verbs": ["get", "list", "watch"],
                }],
            }))?,
        )
        .await?;
    ns.api::<RoleBinding>()
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": { "name": "reader" },
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                    "name": "config-map-reader",
                },
                "subjects": [{ "kind": "ServiceAccount", "name": "reader", "namespace": name }],
            }))?,
        )
        .await?;
    Ok(())
}

#[tokio::test]
async fn kubectl_auth_can_i_answers_per_role() {
    with_namespace("smoke-can-i", |ns| async move {
        let plane = ns.plane;
        let who = format!("system:serviceaccount:{}:reader", ns.name);
        let can_i = |verb: &str, resource: &str| {
            plane.run_kubectl(&[
                "auth", "can-i", verb, resource, "-n", &ns.name, "--as", &who,
            ])
        };

        // Before the Role is bound, nothing is allowed: the answers come from RBAC.
        let before = can_i("list", "configmaps")?;
        assert_eq!(stdout(&before), "no", "{before:?}");
        assert!(!before.status.success());

        grant_config_map_reader(&ns).await?;
        eventually(
            "RBAC allows listing ConfigMaps",
            Duration::from_secs(20),
            || {
                let answer = can_i("list", "configmaps");
                async move { Ok(stdout(&answer?) == "yes") }
            },
        )
        .await?;
        let get = can_i("get", "configmaps")?;
        assert_eq!(stdout(&get), "yes", "{get:?}");
        assert!(get.status.success());

        for (verb, resource) in [("delete", "configmaps"), ("get", "secrets")] {
            let denied = can_i(verb, resource)?;
            assert_eq!(stdout(&denied), "no", "{verb} {resource}: {denied:?}");
            assert_eq!(denied.status.code(), Some(1), "{verb} {resource}");
        }
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn impersonated_service_account_is_limited_by_its_role() {
    with_namespace("smoke-sa", |ns| async move {
        grant_config_map_reader(&ns).await?;
        let reader = ns.client_as_service_account("reader").await?;

        let review = Api::<SelfSubjectReview>::all(reader.clone())
            .create(&PostParams::default(), &SelfSubjectReview::default())
            .await?;
        let user = review
            .status
            .and_then(|status| status.user_info)
            .context("no user info")?;
        assert_eq!(
            user.username.as_deref(),
            Some(format!("system:serviceaccount:{}:reader", ns.name).as_str())
        );

        let as_reader: Api<ConfigMap> = Api::namespaced(reader.clone(), &ns.name);
        eventually(
            "the reader may list ConfigMaps",
            Duration::from_secs(20),
            || {
                let api = as_reader.clone();
                async move { Ok(api.list(&ListParams::default()).await.is_ok()) }
            },
        )
        .await?;

        let denied = as_reader
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({ "metadata": { "name": "nope" } }))?,
            )
            .await
            .expect_err("the Role does not grant create");
        let status = api_status(denied)?;
        assert!(status.is_forbidden(), "{status:?}");

        let secrets = Api::<Secret>::namespaced(reader, &ns.name)
            .list(&ListParams::default())
            .await
            .expect_err("the Role does not grant Secrets");
        assert!(api_status(secrets)?.is_forbidden());

        // The admin may do what the ServiceAccount may not.
        ns.api::<ConfigMap>()
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({ "metadata": { "name": "allowed" } }))?,
            )
            .await?;
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn kubectl_and_helm_work_with_the_written_kubeconfig() {
    with_namespace("smoke-tools", |ns| async move {
        let plane = ns.plane;

        let version: serde_json::Value = serde_json::from_str(&ensure_success(
            "kubectl version",
            &plane.run_kubectl(&["version", "-o", "json"])?,
        )?)?;
        assert_eq!(version["serverVersion"]["gitVersion"], K8S_VERSION);

        let got = plane.run_kubectl(&["get", "namespace", &ns.name, "-o", "name"])?;
        assert_eq!(
            ensure_success("kubectl get", &got)?,
            format!("namespace/{}", ns.name)
        );
        ensure_success(
            "kubectl create configmap",
            &plane.run_kubectl(&[
                "create",
                "configmap",
                "from-kubectl",
                "-n",
                &ns.name,
                "--from-literal=a=b",
            ])?,
        )?;
        let made = ns.api::<ConfigMap>().get("from-kubectl").await?;
        assert_eq!(
            made.data.unwrap_or_default().get("a").map(String::as_str),
            Some("b")
        );

        let helm_version =
            ensure_success("helm version", &plane.run_helm(&["version", "--short"])?)?;
        assert!(helm_version.starts_with("v4."), "{helm_version}");

        // A one-template chart, installed through the API server.
        let chart = tempfile::tempdir()?;
        std::fs::write(
            chart.path().join("Chart.yaml"),
            "apiVersion: v2\nname: smoke\nversion: 0.1.0\n",
        )?;
        std::fs::create_dir(chart.path().join("templates"))?;
        std::fs::write(
            chart.path().join("templates/config.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-config\n\
             data:\n  greeting: {{ .Values.greeting | quote }}\n",
        )?;
        let chart_dir = chart.path().to_str().context("temp path is not UTF-8")?;
        ensure_success(
            "helm install",
            &plane.run_helm(&[
                "install",
                "smoke",
                chart_dir,
                "-n",
                &ns.name,
                "--set",
                "greeting=hi",
            ])?,
        )?;
        let installed = ns.api::<ConfigMap>().get("smoke-config").await?;
        assert_eq!(
            installed
                .data
                .unwrap_or_default()
                .get("greeting")
                .map(String::as_str),
            Some("hi")
        );
        let releases: serde_json::Value = serde_json::from_str(&ensure_success(
            "helm list",
            &plane.run_helm(&["list", "-n", &ns.name, "-o", "json"])?,
        )?)?;
        assert_eq!(releases[0]["name"], "smoke", "{releases}");
        assert_eq!(releases[0]["status"], "deployed", "{releases}");
        Ok(())
    })
    .await;
}
