//! The dashboard's authorization on a real API server: a token is taken only when the API
//! server's TokenReview vouches for it, and what its user may do with coffer's resources is
//! the API server's SubjectAccessReview answer — a ServiceAccount that may only read
//! ActionSets in a namespace may not create one there (so may not back up or restore from
//! the dashboard), one with `create` may, and only in its own namespace.

use coffer::ui::kube_auth::{Ask, KubeAuth};
use coffer_tests::kube_real::RealKube;

const ROLES: &str = r#"apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: viewer, namespace: shop}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: operator, namespace: shop}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: coffer-viewer, namespace: shop}
rules:
  - {apiGroups: [coffer.dev], resources: [actionsets, restorepoints], verbs: [get, list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: coffer-operator, namespace: shop}
rules:
  - {apiGroups: [coffer.dev], resources: [actionsets], verbs: [get, list, watch, create]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: viewer, namespace: shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: coffer-viewer}
subjects: [{kind: ServiceAccount, name: viewer, namespace: shop}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: operator, namespace: shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: coffer-operator}
subjects: [{kind: ServiceAccount, name: operator, namespace: shop}]
"#;

#[tokio::test(flavor = "multi_thread")]
async fn the_api_server_says_who_may_back_up_and_restore_from_the_dashboard() {
    let kube = RealKube::start();
    kube.apply(ROLES).await;
    let auth = KubeAuth::new(kube.client().await);

    // Only tokens the API server vouches for.
    assert_eq!(auth.authenticate("").await.unwrap(), None);
    assert_eq!(auth.authenticate("not-a-token").await.unwrap(), None);
    let viewer_token = kube.service_account_token("shop", "viewer").await;
    let viewer = auth
        .authenticate(&viewer_token)
        .await
        .unwrap()
        .expect("the viewer's token is accepted");
    assert_eq!(viewer.name, "system:serviceaccount:shop:viewer");
    assert!(
        viewer
            .groups
            .iter()
            .any(|g| g == "system:serviceaccounts:shop"),
        "{viewer:?}"
    );
    let operator = auth
        .authenticate(&kube.service_account_token("shop", "operator").await)
        .await
        .unwrap()
        .unwrap();

    let ask = |verb, namespace| Ask {
        verb,
        resource: "actionsets",
        namespace: Some(namespace),
        name: None,
    };
    // Reading is not starting: the viewer sees actions, and may not start one.
    assert_eq!(
        auth.allowed(&viewer, &ask("list", "shop")).await.unwrap(),
        Ok(())
    );
    let denied = auth
        .allowed(&viewer, &ask("create", "shop"))
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        denied.contains("system:serviceaccount:shop:viewer may not create actionsets.coffer.dev in namespace shop"),
        "{denied}"
    );
    assert_eq!(
        auth.allowed(&operator, &ask("create", "shop"))
            .await
            .unwrap(),
        Ok(())
    );
    // Its Role is in shop only.
    assert!(
        auth.allowed(&operator, &ask("create", "default"))
            .await
            .unwrap()
            .is_err()
    );
    assert!(
        auth.allowed(
            &operator,
            &Ask {
                verb: "delete",
                resource: "restorepoints",
                namespace: Some("shop"),
                name: None
            },
        )
        .await
        .unwrap()
        .is_err()
    );
}
