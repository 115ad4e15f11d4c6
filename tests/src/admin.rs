//! A cluster as its admin reaches it from a test: the admin kubeconfig, clients made from it,
//! and `kubectl` and `helm` from the bin folder set up for it. The loopback control plane
//! ([`crate::control_plane`]) and the one-node cluster ([`crate::node`]) both hand these out.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::Context as _;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// The admin kubeconfig and the bin folder holding `kubectl` and `helm`.
#[derive(Debug, Clone)]
pub struct Admin {
    kubeconfig: PathBuf,
    bin: PathBuf,
    helm_home: PathBuf,
}

impl Admin {
    /// The admin of the kubeconfig at `kubeconfig`, with the tools in `bin`; helm keeps its
    /// cache, config and data under `<dir>/helm`.
    pub fn new(kubeconfig: PathBuf, bin: PathBuf, dir: &Path) -> Admin {
        Admin {
            kubeconfig,
            bin,
            helm_home: dir.join("helm"),
        }
    }

    /// The admin kubeconfig.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The folder with the binaries, including `kubectl` and `helm`.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// The client configuration of the admin kubeconfig.
    pub async fn config(&self) -> anyhow::Result<Config> {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig)?;
        Ok(Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?)
    }

    /// An admin client. Build one per test: a client belongs to the runtime it was made in.
    pub async fn client(&self) -> anyhow::Result<Client> {
        Ok(Client::try_from(self.config().await?)?)
    }

    /// `kubectl` with `KUBECONFIG` set and the bin folder first on `PATH`.
    pub fn kubectl(&self) -> Command {
        self.tool("kubectl")
    }

    /// `helm` like [`Admin::kubectl`], with its cache, config and data in its own folder.
    pub fn helm(&self) -> Command {
        let mut helm = self.tool("helm");
        helm.env("HELM_CACHE_HOME", self.helm_home.join("cache"))
            .env("HELM_CONFIG_HOME", self.helm_home.join("config"))
            .env("HELM_DATA_HOME", self.helm_home.join("data"));
        helm
    }

    fn tool(&self, name: &str) -> Command {
        let mut command = Command::new(self.bin.join(name));
        let path = std::env::var("PATH").unwrap_or_default();
        command
            .env("KUBECONFIG", &self.kubeconfig)
            .env("PATH", format!("{}:{path}", self.bin.display()));
        command
    }

    /// Runs `kubectl` with `args` and returns its output, whatever its exit status.
    pub fn run_kubectl(&self, args: &[&str]) -> anyhow::Result<Output> {
        self.kubectl()
            .args(args)
            .output()
            .context("running kubectl")
    }

    /// Runs `helm` with `args` and returns its output, whatever its exit status.
    pub fn run_helm(&self, args: &[&str]) -> anyhow::Result<Output> {
        self.helm().args(args).output().context("running helm")
    }
}
