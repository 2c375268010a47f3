//! The command line, as close to runc's as possible: clap structs only, no behaviour.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// hako: a runc-compatible container runtime where every container chooses its isolation.
#[derive(Debug, Parser)]
#[command(name = "hako", version, about, propagate_version = true)]
pub(crate) struct Cli {
    /// Directory for container state (use a tmpfs).
    #[arg(long, global = true, default_value = "/run/hako")]
    pub root: PathBuf,
    /// Write log messages to this file instead of stderr.
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log debug messages too.
    #[arg(long, global = true)]
    pub debug: bool,
    /// Manage cgroups through systemd (not available: hako manages cgroupfs directly).
    #[arg(long, global = true)]
    pub systemd_cgroup: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// JSON lines with level, msg and time (what containerd reads).
    Json,
}

/// Output format of list and ps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// Aligned columns.
    Table,
    /// JSON.
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Create a new specification file (config.json).
    Spec(SpecArgs),
    /// Create a container (its process waits for `start`).
    Create(CreateArgs),
    /// Start the process of a created container.
    Start(IdArg),
    /// Print the state of a container as JSON.
    State(IdArg),
    /// Send a signal to the container's process.
    Kill(KillArgs),
    /// Delete a container and everything it holds.
    Delete(DeleteArgs),
    /// Create and start a container; in the foreground, wait for it and delete it.
    Run(RunArgs),
    /// Run another process in a running container.
    Exec(ExecArgs),
    /// List the processes of a container.
    Ps(PsArgs),
    /// List containers.
    List(ListArgs),
    /// Freeze every process of a container.
    Pause(IdArg),
    /// Thaw a paused container.
    Resume(IdArg),
    /// Print resource statistics of a container.
    Events(EventsArgs),
    /// Change the resource limits of a running container.
    Update(UpdateArgs),
    /// Print what this build of hako supports (runtime-spec features.md).
    Features,
    /// Print what this host offers hako: cgroup layout, isolation modes.
    Info,
    /// Print the HCS documents hako would submit on Windows for a bundle.
    HcsDoc(HcsDocArgs),
    /// Pull, load, list, inspect, remove, unpack and run images (the store is --store, default /var/lib/hako/images).
    Image(ImageArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout.
    Completion(CompletionArgs),
    /// Print the man page of hako, or of one of its subcommands (`hako man image run`), as roff to stdout.
    Man(ManArgs),
    /// Say whether this host (or a Windows host of --host-os-version) can run an image with process
    /// isolation, with VM isolation, what `auto` picks, and why (reads no layer).
    Compat(CompatArgs),
    /// Kubernetes: print the objects a cluster operator applies to run pods on hako (docs/kubernetes.md).
    #[command(subcommand)]
    K8s(K8sCommand),
    /// Internal: the container's init (never run it by hand).
    #[command(hide = true)]
    Init,
    /// Internal: the process that holds a container's VM.
    #[command(hide = true)]
    VmSupervisor {
        /// The container's state directory.
        dir: PathBuf,
    },
    /// Internal: the host process standing for a process in a VM.
    #[command(hide = true)]
    VmShadow {
        /// The container's state directory.
        dir: PathBuf,
        /// The request to send.
        opfile: PathBuf,
        /// The directory of the supervisor to talk to (a pod sandbox's), DIR by default.
        vm_dir: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub(crate) struct IdArg {
    /// Container id.
    pub id: String,
}

#[derive(Debug, Args)]
pub(crate) struct SpecArgs {
    /// Where to write config.json.
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// A spec for a container run by an unprivileged user (user namespace, no cgroups).
    #[arg(long)]
    pub rootless: bool,
}

#[derive(Debug, Args, Clone)]
pub(crate) struct CreateFlags {
    /// Bundle directory (holds config.json).
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// Unix socket that receives the pty master when process.terminal is true.
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Write the container's pid to this file.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// chroot instead of pivot_root (for a rootfs on ramfs).
    #[arg(long)]
    pub no_pivot: bool,
    /// Keep the caller's session keyring.
    #[arg(long)]
    pub no_new_keyring: bool,
    /// Pass this many extra fds (3, 4, ...) to the container.
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: u32,
}

#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// Container id.
    pub id: String,
    #[command(flatten)]
    pub flags: CreateFlags,
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// Container id.
    pub id: String,
    #[command(flatten)]
    pub flags: CreateFlags,
    /// Return once the process started instead of waiting for it.
    #[arg(short, long)]
    pub detach: bool,
    /// Do not delete the container when it exits.
    #[arg(long)]
    pub keep: bool,
    /// Accepted for runc compatibility.
    #[arg(long, hide = true)]
    pub no_subreaper: bool,
}

#[derive(Debug, Args)]
pub(crate) struct KillArgs {
    /// Send the signal to every process of the container.
    #[arg(short, long)]
    pub all: bool,
    /// Container id.
    pub id: String,
    /// Signal name or number.
    #[arg(default_value = "SIGTERM")]
    pub signal: String,
}

#[derive(Debug, Args)]
pub(crate) struct DeleteArgs {
    /// Kill the container first if it still runs.
    #[arg(short, long)]
    pub force: bool,
    /// Container id.
    pub id: String,
}

#[derive(Debug, Args)]
pub(crate) struct ExecArgs {
    /// Container id.
    pub id: String,
    /// The command and its arguments (unless --process).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
    /// A process.json describing the process.
    #[arg(short, long)]
    pub process: Option<PathBuf>,
    /// Return once the process runs.
    #[arg(short, long)]
    pub detach: bool,
    /// Write the process's pid to this file.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Unix socket that receives the pty master.
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Give the process a terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// Working directory in the container.
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// Environment variable KEY=VALUE (repeatable).
    #[arg(short, long)]
    pub env: Vec<String>,
    /// uid[:gid].
    #[arg(short, long)]
    pub user: Option<String>,
    /// Additional gids (repeatable).
    #[arg(short = 'g', long = "additional-gids")]
    pub additional_gids: Vec<u32>,
    /// Add a capability (repeatable).
    #[arg(short, long)]
    pub cap: Vec<String>,
    /// Set no_new_privs.
    #[arg(long)]
    pub no_new_privs: bool,
    /// AppArmor profile.
    #[arg(long)]
    pub apparmor: Option<String>,
    /// SELinux label.
    #[arg(long)]
    pub process_label: Option<String>,
    /// Pass this many extra fds.
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: u32,
}

#[derive(Debug, Args)]
pub(crate) struct PsArgs {
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Container id.
    pub id: String,
    /// Arguments for ps(1) (default -ef).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_args: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Print only ids.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub(crate) struct EventsArgs {
    /// Print statistics once and exit.
    #[arg(long)]
    pub stats: bool,
    /// Interval between statistics (e.g. 5s, 500ms).
    #[arg(long, default_value = "5s")]
    pub interval: String,
    /// Container id.
    pub id: String,
}

#[derive(Debug, Args)]
pub(crate) struct UpdateArgs {
    /// Container id.
    pub id: String,
    /// A linux.resources JSON document (file path, or - for stdin).
    #[arg(short, long)]
    pub resources: Option<PathBuf>,
    /// Memory limit in bytes.
    #[arg(long)]
    pub memory: Option<i64>,
    /// Memory plus swap limit in bytes (-1: unlimited).
    #[arg(long, allow_hyphen_values = true)]
    pub memory_swap: Option<i64>,
    /// Memory soft limit in bytes.
    #[arg(long)]
    pub memory_reservation: Option<i64>,
    /// Kernel memory limit (cgroup v1).
    #[arg(long)]
    pub kernel_memory: Option<i64>,
    /// Kernel TCP memory limit (cgroup v1).
    #[arg(long)]
    pub kernel_memory_tcp: Option<i64>,
    /// CPU shares.
    #[arg(long)]
    pub cpu_shares: Option<u64>,
    /// CPU CFS quota in microseconds (-1: unlimited).
    #[arg(long, allow_hyphen_values = true)]
    pub cpu_quota: Option<i64>,
    /// CPU CFS period in microseconds.
    #[arg(long)]
    pub cpu_period: Option<u64>,
    /// CPU real-time period.
    #[arg(long)]
    pub cpu_rt_period: Option<u64>,
    /// CPU real-time runtime.
    #[arg(long)]
    pub cpu_rt_runtime: Option<i64>,
    /// CPUs to use (e.g. 0-1).
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes to use.
    #[arg(long)]
    pub cpuset_mems: Option<String>,
    /// Maximum number of processes (-1: unlimited).
    #[arg(long, allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Block I/O weight (10-1000).
    #[arg(long)]
    pub blkio_weight: Option<u16>,
}

#[derive(Debug, Args)]
pub(crate) struct HcsDocArgs {
    /// Bundle directory holding a config.json with a `windows` section.
    pub bundle: PathBuf,
    /// Output format: json (the documents) or text (a summary).
    #[arg(long, default_value = "json")]
    pub format: String,
    /// Container id (default: the bundle directory's name).
    #[arg(long)]
    pub id: Option<String>,
    /// HCS owner (default: hako).
    #[arg(long)]
    pub owner: Option<String>,
    /// Windows host build to write the documents for (default: this host on Windows, 20348 elsewhere).
    #[arg(long)]
    pub host_build: Option<u32>,
    /// Host update build revision (UBR).
    #[arg(long)]
    pub host_revision: Option<u32>,
    /// Logical processors of the host.
    #[arg(long)]
    pub host_processors: Option<u32>,
    /// Isolation: process, hyperv or lcow (default: what the spec asks for).
    #[arg(long)]
    pub isolation: Option<String>,
    /// The image's os.version (10.0.BUILD.REV), for the compatibility verdict.
    #[arg(long)]
    pub image_os_version: Option<String>,
    /// Folder with the LCOW kernel and initrd.
    #[arg(long)]
    pub lcow_boot_files: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ImageArgs {
    /// Directory of the image store.
    #[arg(long, global = true, env = "HAKO_IMAGE_STORE", default_value = "/var/lib/hako/images")]
    pub store: PathBuf,
    #[command(subcommand)]
    pub command: ImageCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ImageCommand {
    /// Pull an image from a registry into the store.
    Pull(PullArgs),
    /// List the images in the store.
    #[command(alias = "list")]
    Ls(ImageLsArgs),
    /// Print an image's record and configuration as JSON.
    Inspect(ImageNameArg),
    /// Remove images, then the blobs no other image uses.
    #[command(alias = "rmi")]
    Rm(ImageRmArgs),
    /// Remove every blob no image uses, and interrupted downloads.
    Prune,
    /// Unpack an image's layers into a new (or empty) directory, refusing hostile layers.
    Unpack(UnpackArgs),
    /// Load the images of an OCI image layout archive (tar, or tar.gz) into the store, with no registry.
    Load(LoadArgs),
    /// Run a command in a new container of an image (Docker's `run`; runc's `hako run ID` is unchanged).
    Run(ImageRunArgs),
}

#[derive(Debug, Args)]
pub(crate) struct LoadArgs {
    /// The archive (`podman save --format oci-archive`, `docker save` 25.0 or later, `skopeo copy ... oci-archive:`).
    pub archive: PathBuf,
    /// Platform to pick where an image is a multi-platform index (default: this host's).
    #[arg(long)]
    pub platform: Option<String>,
    /// Most bytes of blobs the archive may hold (K, M, G, T suffixes allowed).
    #[arg(long, value_parser = parse_size, default_value = "64G")]
    pub max_size: u64,
}

/// Which isolation `hako image run` gives the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum IsolationChoice {
    /// The host's kernel, namespaces and cgroups.
    Process,
    /// A micro-VM of its own.
    Vm,
    /// What the image and the host allow (said on stderr).
    Auto,
}

/// When `hako image run` pulls the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum PullPolicy {
    /// Only when the store does not hold it.
    Missing,
    /// Every time.
    Always,
    /// Never: fail when the store does not hold it.
    Never,
}

#[derive(Debug, Args)]
pub(crate) struct ImageRunArgs {
    /// Remove the container, its bundle and its root filesystem when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Start the container, print its id and return (its output goes to container.log in its bundle).
    #[arg(short, long)]
    pub detach: bool,
    /// Container id (default: 12 random hex digits).
    #[arg(long)]
    pub name: Option<String>,
    /// KEY=VALUE, or KEY alone for this environment's value of KEY (repeatable).
    #[arg(short, long)]
    pub env: Vec<String>,
    /// SRC:DST[:ro|:rw]: bind-mount the host path SRC (absolute) at DST (repeatable).
    #[arg(short, long)]
    pub volume: Vec<String>,
    /// Working directory in the container (created if the image lacks it).
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// uid[:gid] or name[:group], names looked up in the image's /etc/passwd and /etc/group.
    #[arg(short, long)]
    pub user: Option<String>,
    /// Give the process a terminal (relayed to hako's, which must be one).
    #[arg(short, long)]
    pub tty: bool,
    /// Keep stdin open (without it the process reads /dev/null).
    #[arg(short, long)]
    pub interactive: bool,
    /// Memory limit in bytes (K, M, G suffixes allowed).
    #[arg(long, value_parser = parse_size)]
    pub memory: Option<u64>,
    /// CPU limit, in CPUs (1.5: one and a half).
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Replace the image's Entrypoint (an empty string clears it).
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Isolation: process, vm, or auto (chosen from the image and the host; the choice is said on stderr).
    #[arg(long, value_enum, default_value_t = IsolationChoice::Auto)]
    pub isolation: IsolationChoice,
    /// When to pull the image.
    #[arg(long, value_enum, default_value_t = PullPolicy::Missing)]
    pub pull: PullPolicy,
    /// Image name or digest.
    pub image: String,
    /// The command and its arguments (default: the image's Cmd).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct CompletionArgs {
    /// The shell.
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub(crate) struct ManArgs {
    /// A subcommand path (`image run`); none for hako(1).
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct PullArgs {
    /// Image reference ([registry/]repository[:tag][@sha256:digest]; docker.io when no registry is named).
    pub image: String,
    /// Platform to pick from a multi-platform image (os/architecture[/variant]; default: this host's).
    #[arg(long)]
    pub platform: Option<String>,
    /// Speak plain HTTP to the registry (default only for localhost and 127.0.0.0/8 without a CA configured).
    #[arg(long)]
    pub plain_http: bool,
    /// Directory of the registry's CA certificates (*.crt) [default: /etc/hako/certs.d/REGISTRY/, else
    /// /etc/containers/certs.d/REGISTRY/ or /etc/docker/certs.d/REGISTRY/].
    #[arg(long, env = "HAKO_CERT_DIR")]
    pub cert_dir: Option<PathBuf>,
    /// Largest manifest, index or config accepted, in bytes (K, M, G suffixes allowed).
    #[arg(long, value_parser = parse_size, default_value = "4M")]
    pub max_manifest_size: u64,
    /// Layers downloaded at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(1..=16))]
    pub jobs: u8,
    /// Print no progress.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ImageLsArgs {
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Print only names.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ImageNameArg {
    /// Image name (as pulled) or digest (at least 12 hex digits).
    pub image: String,
}

#[derive(Debug, Args)]
pub(crate) struct ImageRmArgs {
    /// Image names or digests.
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct UnpackArgs {
    /// Image name or digest.
    pub image: String,
    /// Target directory (created; or an existing empty one).
    pub dir: PathBuf,
    /// Most uncompressed bytes of all layers together (K, M, G, T suffixes allowed).
    #[arg(long, value_parser = parse_size, default_value = "64G")]
    pub max_size: u64,
    /// Most entries (files, directories, links) of all layers together.
    #[arg(long, default_value_t = 4_000_000)]
    pub max_files: u64,
}

/// `hako k8s` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum K8sCommand {
    /// Print the RuntimeClass object (YAML) for one of hako's containerd handlers: `hako` (process isolation)
    /// or `hako-vm` (a pod is one VM); with --windows-build, the Windows-node form.
    Runtimeclass(RuntimeClassArgs),
}

#[derive(Debug, Args)]
pub(crate) struct RuntimeClassArgs {
    /// The containerd handler: hako or hako-vm.
    pub handler: String,
    /// For Windows nodes of this build (MAJOR.MINOR.BUILD, the node label node.kubernetes.io/windows-build,
    /// e.g. 10.0.20348 for Windows Server 2022): schedule onto them and tolerate their os=windows:NoSchedule taint.
    #[arg(long, value_name = "10.0.BUILD")]
    pub windows_build: Option<String>,
    /// Also tolerate the os=Windows:NoSchedule taint that OpenShift's Windows Machine Config Operator puts
    /// on its Windows nodes.
    #[arg(long, requires = "windows_build")]
    pub openshift: bool,
    /// The RuntimeClass's name (default: the handler, or HANDLER-windows-BUILD).
    #[arg(long)]
    pub name: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct CompatArgs {
    /// Image reference ([registry/]repository[:tag][@sha256:digest]), or the name or digest of an image
    /// in the store (the store is read first; otherwise the registry's index, manifest and config).
    pub image: String,
    /// Judge for a Windows host of this version (10.0.BUILD[.UBR], e.g. 10.0.20348.2113) instead of this
    /// Linux host.
    #[arg(long, value_name = "10.0.BUILD[.UBR]")]
    pub host_os_version: Option<String>,
    /// The Windows host's edition (with --host-os-version): server, client (Windows 10/11) or nano-server
    /// (no win32k).
    #[arg(long, value_enum, default_value_t = HostEdition::Server, requires = "host_os_version")]
    pub host_edition: HostEdition,
    /// Platform to pick from a multi-platform image (os/architecture[/variant][:os.version]; default: the
    /// host's, falling back to the entry of another OS, whose verdict then says which host runs it).
    #[arg(long)]
    pub platform: Option<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = CompatFormat::Text)]
    pub format: CompatFormat,
    /// Directory of the image store.
    #[arg(long, env = "HAKO_IMAGE_STORE", default_value = "/var/lib/hako/images")]
    pub store: PathBuf,
    /// Speak plain HTTP to the registry (default only for localhost and 127.0.0.0/8).
    #[arg(long)]
    pub plain_http: bool,
}

/// A Windows host's edition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum HostEdition {
    /// Windows Server.
    Server,
    /// Windows 10/11.
    Client,
    /// Nano Server (no win32k).
    NanoServer,
}

/// Output format of `hako compat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum CompatFormat {
    /// Lines for people.
    Text,
    /// The decision as JSON.
    Json,
}

/// A size in bytes with an optional K, M, G or T suffix (powers of 1024).
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, shift) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(format!("{s:?}: the suffix must be K, M, G or T")),
            };
            (&t[..i], shift)
        }
        _ => (t, 0),
    };
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a size (for example 512, 64M or 2G)"))?;
    n.checked_mul(1u64 << shift).ok_or_else(|| format!("{s:?} is too large"))
}
