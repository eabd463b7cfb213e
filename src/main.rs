//! The `synguard` command line: parses arguments, sets up logging and
//! dispatches to config, the gateway runner and the cookie secret writer.
//! It holds no gateway logic and never validates settings itself (config
//! does); it only decides what is printed and the exit code.

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{reload, EnvFilter};

use synguard::reload::LogFilter;

use synguard::config::{self, Overrides};
use synguard::io::xdp::XdpSetting;

/// Exit code for a configuration that does not validate (check-config), the
/// same code clap uses for a bad command line.
const EXIT_BAD_CONFIG: u8 = 2;

#[derive(Parser)]
#[command(
    name = "synguard",
    version,
    about = "Inline SYN-flood defense gateway: SYN cookies, handshake proxy, sequence translation",
    long_about = "Inline SYN-flood defense gateway.\n\n\
        synguard sits as a bump in the wire between a client-facing and a \
        server-facing interface. It answers SYNs to protected services with \
        SYN cookies, opens the backend connection only for clients that \
        complete the handshake, then translates sequence numbers, timestamps \
        and windows for the life of the connection. All other traffic is \
        forwarded untouched.\n\n\
        Configuration comes from a TOML file (config/synguard.toml in the \
        source, /etc/synguard/synguard.toml when installed from the Debian \
        package, documents every key) plus the flags below, which win over \
        the file. SIGHUP (systemctl reload synguard) re-reads the file."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway until SIGINT or SIGTERM.
    ///
    /// SIGHUP re-reads the configuration file and applies what can change
    /// at run time; the log says what was applied and what needs a restart.
    Run(RunArgs),
    /// Validate a configuration and print it, fully resolved, as TOML.
    ///
    /// Exits 0 and prints the configuration the gateway would use (file +
    /// flags + defaults); exits 2 with a message naming the bad key otherwise.
    CheckConfig(CheckArgs),
    /// Ask the running gateway for its connections, like `ss state syn-recv`.
    ///
    /// Prints counts by state and the connections (SYN_RECV entries first)
    /// with their addresses, age, idle time and retransmissions.
    Status(StatusArgs),
    /// Remove the XDP data path a stopped gateway left in place.
    ///
    /// `synguard run` with io.xdp on pins its XDP attachments and the
    /// forwarded flows' map in bpffs (io.xdp_pin_dir), so established flows
    /// keep being forwarded by the kernel across a restart or a crash and
    /// the next run adopts them. This removes those pins for a clean stop:
    /// the programs detach (once no process holds them) and the flows end.
    /// Run it in the gateway's network namespace, after stopping it.
    Detach(DetachArgs),
    /// Write a new random cookie secret file (mode 0600).
    ///
    /// Point cookies.secret_file (or --secret-file) at it so cookies survive
    /// restarts and several instances agree.
    Keygen(KeygenArgs),
    /// Write the man pages and shell completions generated from these
    /// definitions into DIR (used when building the Debian package).
    #[command(hide = true)]
    GenerateDocs(GenerateDocsArgs),
}

#[derive(Args)]
struct GenerateDocsArgs {
    /// Directory for man/ (synguard.1, synguard-run.1, ...) and completions/.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

#[derive(Args)]
struct RunArgs {
    /// Configuration file (TOML). Without it every required setting must be
    /// given as a flag.
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    overrides: OverrideArgs,
}

#[derive(Args)]
struct CheckArgs {
    /// Configuration file (TOML) to check.
    #[arg(short, long, value_name = "FILE")]
    config: PathBuf,
    #[command(flatten)]
    overrides: OverrideArgs,
}

#[derive(Args)]
struct DetachArgs {
    /// Read the interfaces and io.xdp_pin_dir from this configuration file.
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Client-facing interface (wins over --config).
    #[arg(long, value_name = "IF")]
    client_iface: Option<String>,
    /// Server-facing interface (wins over --config).
    #[arg(long, value_name = "IF")]
    server_iface: Option<String>,
    /// bpffs base directory (wins over --config) [default: /sys/fs/bpf/synguard].
    #[arg(long, value_name = "DIR")]
    xdp_pin_dir: Option<PathBuf>,
}

#[derive(Args)]
struct KeygenArgs {
    /// Where to write the secret.
    #[arg(short, long, value_name = "FILE")]
    out: PathBuf,
    /// Replace FILE if it exists (cookies issued under the old secret stop
    /// validating once the gateway restarts with the new one).
    #[arg(long)]
    force: bool,
}

/// Flags that override the file, one per overridable key.
#[derive(Args)]
struct OverrideArgs {
    /// Client-facing interface [file: interfaces.client].
    #[arg(long, value_name = "IF")]
    client_iface: Option<String>,
    /// Server-facing interface [file: interfaces.server].
    #[arg(long, value_name = "IF")]
    server_iface: Option<String>,
    /// Protected service, e.g. 198.18.0.2:8080 or [2001:db8::2]:8080.
    /// Repeat (or separate with commas) for several; replaces the file's
    /// protect.services list.
    #[arg(long, value_name = "ADDR:PORT", value_parser = parse_protect, value_delimiter = ',')]
    protect: Vec<SocketAddr>,
    /// Metrics endpoint address, or "off" [file: metrics.listen].
    #[arg(long, value_name = "ADDR:PORT|off", value_parser = parse_metrics_listen)]
    metrics_listen: Option<MetricsListen>,
    /// Cookie secret file written by `synguard keygen` [file: cookies.secret_file].
    #[arg(long, value_name = "FILE")]
    secret_file: Option<PathBuf>,
    /// Control socket for `synguard status`, or "off" [file: control.socket].
    #[arg(long, value_name = "PATH|off", value_parser = parse_control_socket)]
    control_socket: Option<ControlSocket>,
    /// Where a graceful stop (SIGTERM, SIGINT) leaves the flows for the next
    /// start on the same interfaces, or "off" [file: state.flow_file].
    #[arg(long, value_name = "FILE|off", value_parser = parse_flow_file)]
    flow_file: Option<FlowFile>,
    /// tracing filter, e.g. info or synguard=debug [file: log.level]. RUST_LOG wins.
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
    /// XDP fast path on both ports: auto, native, generic or off [file: io.xdp].
    #[arg(long, value_name = "MODE", value_parser = config::parse_xdp)]
    xdp: Option<XdpSetting>,
    /// bpffs directory for the XDP pins, or "off" [file: io.xdp_pin_dir].
    #[arg(long, value_name = "DIR|off", value_parser = parse_pin_dir)]
    xdp_pin_dir: Option<PinDirArg>,
}

/// `--xdp-pin-dir` value (newtype for the same reason as MetricsListen).
#[derive(Clone)]
struct PinDirArg(Option<PathBuf>);

fn parse_pin_dir(s: &str) -> Result<PinDirArg, String> {
    Ok(PinDirArg(config::parse_control_socket(s)))
}

/// `--metrics-listen` value; a newtype because clap reads a bare
/// `Option<Option<_>>` field as "flag with optional value".
#[derive(Clone, Copy)]
struct MetricsListen(Option<SocketAddr>);

/// `--control-socket` value (newtype for the same reason as MetricsListen).
#[derive(Clone)]
struct ControlSocket(Option<PathBuf>);

fn parse_control_socket(s: &str) -> Result<ControlSocket, String> {
    Ok(ControlSocket(config::parse_control_socket(s)))
}

/// `--flow-file` value (newtype for the same reason as MetricsListen).
#[derive(Clone)]
struct FlowFile(Option<PathBuf>);

fn parse_flow_file(s: &str) -> Result<FlowFile, String> {
    Ok(FlowFile(config::parse_flow_file(s)))
}

#[derive(Args)]
struct StatusArgs {
    /// Read control.socket from this configuration file.
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The gateway's control socket (wins over --config).
    #[arg(long, value_name = "PATH")]
    control_socket: Option<PathBuf>,
    /// Only connections in this state: syn_recv, backend_syn_sent,
    /// established, fin_wait_1, fin_wait_2, close_wait, closing, last_ack,
    /// time_wait.
    #[arg(long, value_name = "STATE")]
    state: Option<String>,
    /// Print the gateway's JSON reply instead of a table.
    #[arg(long)]
    json: bool,
    /// List at most this many connections.
    #[arg(long, value_name = "N", default_value_t = 100)]
    limit: usize,
}

fn parse_protect(s: &str) -> Result<SocketAddr, String> {
    s.trim()
        .parse()
        .map_err(|_| "expected ADDR:PORT, IPv6 in brackets (e.g. [2001:db8::2]:8080)".to_string())
}

fn parse_metrics_listen(s: &str) -> Result<MetricsListen, String> {
    config::parse_listen(s).map(MetricsListen)
}

impl From<OverrideArgs> for Overrides {
    fn from(a: OverrideArgs) -> Self {
        Overrides {
            client_iface: a.client_iface,
            server_iface: a.server_iface,
            protect: a.protect,
            metrics_listen: a.metrics_listen.map(|m| m.0),
            secret_file: a.secret_file,
            control_socket: a.control_socket.map(|c| c.0),
            flow_file: a.flow_file.map(|f| f.0),
            log_level: a.log_level,
            xdp: a.xdp,
            xdp_pin_dir: a.xdp_pin_dir.map(|d| d.0),
        }
    }
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Run(args) => report(run(args)),
        Command::CheckConfig(args) => check_config(args),
        Command::Status(args) => report(status(args)),
        Command::Keygen(args) => report(keygen(args)),
        Command::Detach(args) => report(detach(args)),
        Command::GenerateDocs(args) => report(generate_docs(args)),
    }
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    let overrides: Overrides = args.overrides.into();
    let settings = config::load(args.config.as_deref(), &overrides)?;
    let log = init_tracing(&settings.log_level)?;
    let reloader = synguard::reload::Reloader::new(args.config, overrides, settings, log);
    synguard::gateway::run(reloader)
}

fn detach(args: DetachArgs) -> anyhow::Result<()> {
    let file_io = match &args.config {
        Some(path) => Some(config::load(Some(path), &Overrides::default())?.io),
        None => None,
    };
    let pick = |flag: Option<String>, from_file: Option<&String>, name: &str| {
        flag.or_else(|| from_file.cloned())
            .ok_or_else(|| anyhow::anyhow!("--{name} (or --config) is required"))
    };
    let client = pick(
        args.client_iface,
        file_io.as_ref().map(|io| &io.client_iface),
        "client-iface",
    )?;
    let server = pick(
        args.server_iface,
        file_io.as_ref().map(|io| &io.server_iface),
        "server-iface",
    )?;
    let base = match (args.xdp_pin_dir, file_io) {
        (Some(dir), _) => dir,
        (None, Some(io)) => io
            .xdp_pin_dir
            .ok_or_else(|| anyhow::anyhow!("io.xdp_pin_dir is \"off\": nothing is pinned"))?,
        (None, None) => PathBuf::from(synguard::io::config::DEFAULT_XDP_PIN_DIR),
    };
    let pins = synguard::io::xdp::pins::PinDir::for_instance(&base, &client, &server)?;
    if pins.remove_all()? {
        println!(
            "removed {}: the XDP programs on {client} and {server} detach and their forwarded flows end",
            pins.path().display()
        );
    } else {
        println!(
            "nothing pinned at {} (in this network namespace)",
            pins.path().display()
        );
    }
    Ok(())
}

fn check_config(args: CheckArgs) -> ExitCode {
    match config::load(Some(&args.config), &args.overrides.into()) {
        Ok(settings) => {
            print!("{}", config::render(&settings));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_BAD_CONFIG)
        }
    }
}

fn status(args: StatusArgs) -> anyhow::Result<()> {
    let socket = match (args.control_socket, &args.config) {
        (Some(path), _) => path,
        (None, Some(file)) => {
            // Only the control section matters here; interfaces and services
            // need not be valid for asking a running gateway.
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let table: toml::Table = toml::from_str(&text)
                .with_context(|| format!("{} is not valid TOML", file.display()))?;
            match table
                .get("control")
                .and_then(|c| c.get("socket"))
                .and_then(|s| s.as_str())
            {
                Some(s) => config::parse_control_socket(s)
                    .with_context(|| format!("control.socket is off in {}", file.display()))?,
                None => PathBuf::from(config::DEFAULT_CONTROL_SOCKET),
            }
        }
        (None, None) => PathBuf::from(config::DEFAULT_CONTROL_SOCKET),
    };
    let request = synguard::control::StatusRequest {
        state: args.state,
        limit: args.limit,
    };
    let (reply, raw) = synguard::control::query(&socket, &request)?;
    if args.json {
        println!("{raw}");
    } else {
        print!("{}", synguard::control::render_text(&reply));
    }
    Ok(())
}

fn keygen(args: KeygenArgs) -> anyhow::Result<()> {
    synguard::cookie::CookieSecret::write_new(&args.out, args.force)
        .with_context(|| format!("cannot write cookie secret to {}", args.out.display()))?;
    println!(
        "wrote new cookie secret to {} (mode 0600)",
        args.out.display()
    );
    Ok(())
}

/// Man pages (one per subcommand, via clap_mangen) and bash, zsh and fish
/// completions (clap_complete), from the same clap definitions as the CLI.
fn generate_docs(args: GenerateDocsArgs) -> anyhow::Result<()> {
    use clap::CommandFactory as _;
    use clap_complete::Shell;
    let man = args.out.join("man");
    let completions = args.out.join("completions");
    for dir in [&man, &completions] {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    // The CLI without hidden subcommands: clap_mangen skips them but the
    // completion generators do not, and clap cannot remove a subcommand.
    let full = Cli::command();
    let mut public = clap::Command::new("synguard")
        .version(env!("CARGO_PKG_VERSION"))
        .subcommand_required(true)
        .subcommands(full.get_subcommands().filter(|c| !c.is_hide_set()).cloned());
    if let Some(about) = full.get_about() {
        public = public.about(about.clone());
    }
    if let Some(long_about) = full.get_long_about() {
        public = public.long_about(long_about.clone());
    }
    clap_mangen::generate_to(public.clone(), &man)
        .with_context(|| format!("writing man pages to {}", man.display()))?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut public, "synguard", &completions)
            .with_context(|| format!("writing {shell} completions to {}", completions.display()))?;
    }
    Ok(())
}

/// Logs go to stderr (the journal, under systemd). RUST_LOG, when set, wins
/// over the configured level (the usual convention for ad-hoc debugging),
/// also across reloads; a bad RUST_LOG falls back to the configured level
/// with a warning rather than stopping the gateway. The filter sits in a
/// reload layer so SIGHUP can change log.level; `None` if a subscriber was
/// already installed (then the level cannot be reloaded).
fn init_tracing(level: &str) -> anyhow::Result<Option<LogFilter>> {
    let configured =
        || EnvFilter::try_new(level).with_context(|| format!("log level \"{level}\" is not valid"));
    let (filter, env_wins, bad_env) = match std::env::var("RUST_LOG") {
        Ok(env) if !env.trim().is_empty() => match EnvFilter::try_new(&env) {
            Ok(f) => (f, true, None),
            Err(e) => (
                configured()?,
                false,
                Some(format!("ignoring RUST_LOG=\"{env}\": {e}")),
            ),
        },
        _ => (configured()?, false, None),
    };
    let (filter, handle) = reload::Layer::new(filter);
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                // Colour codes only for a terminal, not in the journal.
                .with_ansi(std::io::stderr().is_terminal()),
        )
        .try_init()
        .is_ok();
    if let Some(warning) = bad_env {
        tracing::warn!("{warning}");
    }
    Ok(installed.then(|| LogFilter::new(handle, env_wins)))
}
