//! The connection to the cluster's API server (the `kube` crate), and the few calls creel
//! makes through it.

use std::future::Future;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::config::KubernetesConfig;
use crate::error::{Error, Result};

/// A client for one namespace of one cluster.
#[derive(Clone)]
pub(crate) struct Cluster {
    client: kube::Client,
    namespace: String,
}

impl Cluster {
    /// Connects as the `[kubernetes]` table says: its kubeconfig and context, else
    /// `$KUBECONFIG` or `~/.kube/config`, else the service account of the pod creel runs in.
    /// Nothing is sent yet.
    pub(crate) async fn connect(k: &KubernetesConfig) -> Result<Cluster> {
        let options = KubeConfigOptions {
            context: k.context.clone(),
            ..Default::default()
        };
        let config = match &k.kubeconfig {
            Some(path) => {
                let kc = Kubeconfig::read_from(path).map_err(|e| {
                    Error::cluster(format!("read the kubeconfig `{}`", path.display()), e)
                })?;
                kube::Config::from_custom_kubeconfig(kc, &options)
                    .await
                    .map_err(|e| {
                        Error::cluster(format!("use the kubeconfig `{}`", path.display()), e)
                    })?
            }
            None if k.context.is_some() => kube::Config::from_kubeconfig(&options)
                .await
                .map_err(|e| Error::cluster("read the kubeconfig", e))?,
            None => kube::Config::infer()
                .await
                .map_err(|e| Error::cluster("find a kubeconfig or a service account", e))?,
        };
        let client = kube::Client::try_from(config)
            .map_err(|e| Error::cluster("make a client for the cluster", e))?;
        Ok(Cluster {
            client,
            namespace: k.namespace.clone(),
        })
    }

    /// The namespace.
    pub(crate) fn namespace(&self) -> &str {
        &self.namespace
    }

    pub(crate) fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    pub(crate) fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    pub(crate) fn claims(&self) -> Api<PersistentVolumeClaim> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    pub(crate) fn policies(&self) -> Api<NetworkPolicy> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    pub(crate) fn services(&self) -> Api<k8s_openapi::api::core::v1::Service> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// The API server's version (`/version`), to check the connection.
    pub(crate) async fn version(&self) -> Result<String> {
        let v = self
            .client
            .apiserver_version()
            .await
            .map_err(|e| Error::cluster("reach the API server", e))?;
        Ok(v.git_version)
    }
}

/// Creates `object`, failing with what the API server said.
pub(crate) async fn create<K>(api: &Api<K>, object: &K, what: &str) -> Result<K>
where
    K: Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    api.create(&PostParams::default(), object)
        .await
        .map_err(|e| Error::cluster(format!("create {what}"), e))
}

/// Deletes object `name`; one that is not there is fine.
pub(crate) async fn delete<K>(api: &Api<K>, name: &str, grace_seconds: Option<u32>) -> Result<()>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let params = DeleteParams {
        grace_period_seconds: grace_seconds,
        ..Default::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(Error::cluster(format!("delete `{name}`"), e)),
    }
}

/// Whether the API server said 404.
pub(crate) fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// Whether the API server said 409 (the name is taken).
pub(crate) fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// Runs `f` to its end from synchronous code: on a runtime of its own, in a thread of its own
/// when the caller is itself on a tokio runtime (the MCP and ACP faces call the engine from
/// theirs).
pub(crate) fn block_on<F>(f: F) -> Result<F::Output>
where
    F: Future + Send,
    F::Output: Send,
{
    let run = move || -> Result<F::Output> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::cluster("start a runtime for the cluster's client", e))?;
        Ok(rt.block_on(f))
    };
    if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|s| {
            s.spawn(run)
                .join()
                .unwrap_or_else(|_| Err(Error::cluster("talk to the cluster", "a thread panicked")))
        })
    } else {
        run()
    }
}
