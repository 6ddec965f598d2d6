package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/faas-platform/faas/api"
	"github.com/faas-platform/faas/engine"
	"github.com/faas-platform/faas/image"
	"github.com/faas-platform/faas/sandbox"
	"github.com/faas-platform/faas/sandbox/gvisor"
	"github.com/faas-platform/faas/sshgw"
	"github.com/faas-platform/faas/store"
)

// serveConfig is everything `faas serve` is configured with: flags, each defaulting
// to an environment variable, each defaulting to a built-in value.
type serveConfig struct {
	host         string
	port         int
	dataDir      string
	databaseURL  string
	runsc        string
	agent        string
	stock        int
	stockLangs   string
	stockImages  string
	stockTargets []engine.StockTarget
	maxSandbox   int
	poolIdle     time.Duration
	stockDemand  time.Duration
	maxWarmMB    int
	logLevel     string
	debugRunsc   bool
	shutdownDur  time.Duration
	limits       engine.Limits
	// adminKey, when set (env FAAS_API_KEY), is registered as an admin key.
	adminKey  string
	rate      api.RateLimit
	quota     engine.Quota
	heartbeat time.Duration
	// sessionIdle ends sessions idle this long.
	sessionIdle time.Duration
	// branchStock and branchStockMax: sandboxes restored ahead of demand.
	branchStock, branchStockMax int
	// sshPort is the SSH gateway's port (0: none); sshHost the host name handed
	// out for it ("" : the API request's host).
	sshPort int
	sshHost string
	// publicURL and exposeDomain: where clients reach exposed ports.
	publicURL, exposeDomain string
	// diskMB bounds each sandbox's writable layer (instances choose their own).
	diskMB int
	// meterEvery is how often running instances are metered (and idle ones paused).
	meterEvery time.Duration
	// compressAfter compresses snapshots unused this long.
	compressAfter time.Duration
	// imageCacheMB bounds the image store; languageImages maps languages to images;
	// registryAuth holds registry credentials.
	imageCacheMB   int
	languageImages string
	registryAuth   string
}

func envOr(name, def string) string {
	if v := strings.TrimSpace(os.Getenv(name)); v != "" {
		return v
	}
	return def
}

func envDuration(name string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(strings.TrimSpace(os.Getenv(name))); err == nil {
		return d
	}
	return def
}

func envFloat(name string, def float64) float64 {
	if v, err := strconv.ParseFloat(strings.TrimSpace(os.Getenv(name)), 64); err == nil {
		return v
	}
	return def
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(strings.TrimSpace(os.Getenv(name))); err == nil {
		return v
	}
	return def
}

// besideExecutable finds a program next to the running faas binary, then on PATH.
func besideExecutable(name string) string {
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	return ""
}

const serveUsage = `usage: faas serve [flags]

Runs the API server (and the SSH gateway to instances) on the state in the data
directory. Each flag defaults to the environment variable it names.`

func parseServe(args []string) (*serveConfig, error) {
	c := &serveConfig{limits: engine.DefaultLimits(), adminKey: strings.TrimSpace(os.Getenv("FAAS_API_KEY"))}
	fs := newFlagSet("faas serve", serveUsage, os.Stderr)
	fs.StringVar(&c.host, "host", envOr("FAAS_HOST", "127.0.0.1"), "address to listen on (env FAAS_HOST); 0.0.0.0 for every interface")
	fs.IntVar(&c.port, "port", envInt("FAAS_API_PORT", 8080), "port to listen on (env FAAS_API_PORT)")
	fs.StringVar(&c.dataDir, "data-dir", defaultDataDir(), "directory for all state (env FAAS_DATA_DIR)")
	fs.StringVar(&c.databaseURL, "database-url", os.Getenv("FAAS_DATABASE_URL"), "PostgreSQL URL (env FAAS_DATABASE_URL); empty: SQLite in the data dir")
	fs.StringVar(&c.runsc, "runsc", envOr("FAAS_RUNSC", besideExecutable("runsc")), "static runsc binary (env FAAS_RUNSC)")
	fs.StringVar(&c.agent, "agent", envOr("FAAS_AGENT", besideExecutable("faas-agent")), "faas-agent binary (env FAAS_AGENT)")
	fs.IntVar(&c.stock, "stock", envInt("FAAS_STOCK", 2), "pre-booted sandboxes kept ready for ephemeral executions (env FAAS_STOCK)")
	fs.StringVar(&c.stockImages, "stock-images", os.Getenv("FAAS_STOCK_IMAGES"), "pre-booted sandboxes of other images, with interpreters started ahead: LANGUAGE[+LANGUAGE]@IMAGE=SIZE, comma-separated, e.g. python@python:3.12-slim=2,javascript@node:20=1 (env FAAS_STOCK_IMAGES)")
	fs.StringVar(&c.stockLangs, "stock-languages", envOr("FAAS_STOCK_LANGUAGES", "python,bash"), "languages whose interpreter stocked sandboxes start ahead, comma-separated; \"none\" for none (env FAAS_STOCK_LANGUAGES)")
	fs.DurationVar(&c.stockDemand, "stock-demand-window", envDuration("FAAS_STOCK_DEMAND_WINDOW", 10*time.Minute), "for this long after a request of a language whose interpreter stocked sandboxes do not start ahead, new ones start it too; 0 turns it off (env FAAS_STOCK_DEMAND_WINDOW)")
	fs.DurationVar(&c.poolIdle, "pool-idle-timeout", envDuration("FAAS_POOL_IDLE_TIMEOUT", 5*time.Minute), "destroy warm sandboxes idle this long (env FAAS_POOL_IDLE_TIMEOUT)")
	fs.IntVar(&c.maxWarmMB, "max-warm-memory-mb", envInt("FAAS_MAX_WARM_MEMORY_MB", 4096), "memory idle warm sandboxes may hold together (env FAAS_MAX_WARM_MEMORY_MB)")
	fs.IntVar(&c.maxSandbox, "max-sandboxes", envInt("FAAS_MAX_SANDBOXES", 64), "most sandboxes alive at once; more requests get 503 (env FAAS_MAX_SANDBOXES)")
	fs.StringVar(&c.logLevel, "log-level", envOr("FAAS_LOG_LEVEL", "info"), "debug, info, warn or error (env FAAS_LOG_LEVEL)")
	fs.BoolVar(&c.debugRunsc, "debug-runsc", os.Getenv("FAAS_DEBUG_RUNSC") != "", "keep runsc debug logs in the data dir (env FAAS_DEBUG_RUNSC)")
	fs.IntVar(&c.rate.PerMinute, "rate-per-minute", envInt("FAAS_RATE_PER_MINUTE", 1200), "requests a minute each API key may make (token bucket; 0: no limit) (env FAAS_RATE_PER_MINUTE)")
	fs.IntVar(&c.rate.Burst, "rate-burst", envInt("FAAS_RATE_BURST", 100), "requests a key may make at once before the rate applies (env FAAS_RATE_BURST)")
	fs.IntVar(&c.quota.Executions, "quota-executions", envInt("FAAS_QUOTA_EXECUTIONS", 64), "executions one account may run at once; 0: no limit (env FAAS_QUOTA_EXECUTIONS)")
	fs.Float64Var(&c.quota.VCPU, "quota-vcpu", envFloat("FAAS_QUOTA_VCPU", 64), "CPU cores one account's running executions may ask for together; 0: no limit (env FAAS_QUOTA_VCPU)")
	fs.IntVar(&c.quota.MemoryMB, "quota-memory-mb", envInt("FAAS_QUOTA_MEMORY_MB", 65536), "memory one account's running executions may ask for together; 0: no limit (env FAAS_QUOTA_MEMORY_MB)")
	fs.IntVar(&c.quota.SnapshotMB, "quota-snapshot-mb", envInt("FAAS_QUOTA_SNAPSHOT_MB", 10240), "disk one account's snapshots may take together; 0: no limit (env FAAS_QUOTA_SNAPSHOT_MB)")
	fs.DurationVar(&c.sessionIdle, "session-idle-timeout", envDuration("FAAS_SESSION_IDLE_TIMEOUT", engine.DefaultSessionIdleTimeout), "end sessions and branches idle this long (env FAAS_SESSION_IDLE_TIMEOUT)")
	fs.IntVar(&c.branchStock, "branch-stock", envInt("FAAS_BRANCH_STOCK", 1), "sandboxes restored ahead of demand from each new snapshot, for fast branches (env FAAS_BRANCH_STOCK)")
	fs.IntVar(&c.branchStockMax, "branch-stock-max", envInt("FAAS_BRANCH_STOCK_MAX", 8), "sandboxes restored ahead of demand over all snapshots; 0 turns it off (env FAAS_BRANCH_STOCK_MAX)")
	fs.IntVar(&c.sshPort, "ssh-port", envInt("FAAS_SSH_PORT", 2222), "port of the SSH gateway to instances; 0: no gateway (env FAAS_SSH_PORT)")
	fs.StringVar(&c.sshHost, "ssh-host", os.Getenv("FAAS_SSH_HOST"), "host name handed out for SSH; empty: the host the API was called on (env FAAS_SSH_HOST)")
	fs.StringVar(&c.publicURL, "public-url", os.Getenv("FAAS_PUBLIC_URL"), "the server's URL as clients reach it, for exposed ports' URLs; empty: each request's (env FAAS_PUBLIC_URL)")
	fs.StringVar(&c.exposeDomain, "expose-domain", envOr("FAAS_EXPOSE_DOMAIN", "localhost"), "requests for NAME-INSTANCE.DOMAIN go to the instance's exposed port NAME; \"none\" turns this off (env FAAS_EXPOSE_DOMAIN)")
	fs.IntVar(&c.diskMB, "disk-mb", envInt("FAAS_DISK_MB", 0), "each sandbox's writable layer and /tmp (each; held in its memory); 0: a quarter of its memory, also the most; instances set their own (env FAAS_DISK_MB)")
	fs.DurationVar(&c.meterEvery, "instance-meter-interval", envDuration("FAAS_INSTANCE_METER_INTERVAL", time.Minute), "how often running instances' usage is recorded and idle ones paused (env FAAS_INSTANCE_METER_INTERVAL)")
	fs.DurationVar(&c.compressAfter, "snapshot-compress-after", envDuration("FAAS_SNAPSHOT_COMPRESS_AFTER", engine.DefaultSnapshotCompressAfter), "compress (zstd) the image of a snapshot not restored this long; negative: never (env FAAS_SNAPSHOT_COMPRESS_AFTER)")
	fs.IntVar(&c.imageCacheMB, "image-cache-mb", envInt("FAAS_IMAGE_CACHE_MB", 20480), "disk the image store may use; least recently used images go first (env FAAS_IMAGE_CACHE_MB)")
	fs.StringVar(&c.languageImages, "language-images", os.Getenv("FAAS_LANGUAGE_IMAGES"), "images languages run in when a request names none, e.g. python=python:3.12-slim,javascript=node:20; empty: the host image (env FAAS_LANGUAGE_IMAGES)")
	c.registryAuth = os.Getenv("FAAS_REGISTRY_AUTH") // host=user:password,...; an environment variable only, never a flag (kept out of ps)
	fs.DurationVar(&c.heartbeat, "stream-heartbeat", envDuration("FAAS_STREAM_HEARTBEAT", 15*time.Second), "heartbeat interval of idle output streams (env FAAS_STREAM_HEARTBEAT)")
	fs.DurationVar(&c.shutdownDur, "shutdown-timeout", 30*time.Second, "how long SIGTERM waits for executions in flight")
	fs.DurationVar(&c.limits.MaxTimeout, "max-timeout", c.limits.MaxTimeout, "longest timeout a request may ask for")
	fs.IntVar(&c.limits.MaxMemoryMB, "max-memory-mb", c.limits.MaxMemoryMB, "most memory a request may ask for")
	fs.Int64Var(&c.limits.MaxOutputBytes, "max-output-bytes", int64(envInt("FAAS_MAX_OUTPUT_BYTES", int(c.limits.MaxOutputBytes))), "stdout and stderr kept per execution, each (env FAAS_MAX_OUTPUT_BYTES)")
	positional, err := parseFlags(fs, args, nil)
	if err != nil {
		return nil, err
	}
	if len(positional) > 0 {
		return nil, usageError{fmt.Sprintf("serve takes no arguments, got %q", positional)}
	}
	if c.stockTargets, err = engine.ParseStockTargets(c.stockImages); err != nil {
		return nil, usageError{err.Error()}
	}
	return c, nil
}

func runServe(ctx context.Context, args []string) error {
	c, err := parseServe(args)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.logLevel)); err != nil {
		return usageError{"bad log level " + c.logLevel}
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	return serve(ctx, c, log, nil)
}

// serve runs the server until ctx ends. ready, when non-nil, receives the bound
// address once the server accepts connections.
func serve(ctx context.Context, c *serveConfig, log *slog.Logger, ready chan<- string) error {
	if err := os.MkdirAll(c.dataDir, 0o700); err != nil {
		return fmt.Errorf("creating data dir: %w", err)
	}
	st, err := store.Open(ctx, c.databaseURL, c.dataDir)
	if err != nil {
		return fmt.Errorf("opening store: %w", err)
	}
	defer st.Close()

	gcfg := gvisor.Config{
		Runsc:           c.runsc,
		Agent:           c.agent,
		StateDir:        filepath.Join(c.dataDir, "sandboxes"),
		DefaultMemoryMB: c.limits.DefaultMemoryMB,
		DefaultCPUCores: c.limits.DefaultCPUCores,
		WritableLayerMB: c.diskMB,
		Logger:          log,
	}
	if c.debugRunsc {
		gcfg.DebugLogDir = filepath.Join(c.dataDir, "runsc-logs")
		_ = os.MkdirAll(gcfg.DebugLogDir, 0o700)
	}
	driver, err := gvisor.New(gcfg)
	if err != nil {
		if errors.Is(err, sandbox.ErrUnavailable) {
			return fmt.Errorf("cannot run sandboxes: %w", err)
		}
		return err
	}
	if n, err := driver.Sweep(ctx); err != nil {
		log.Warn("removing sandboxes left by a previous run", "found", n, "err", err)
	} else if n > 0 {
		log.Info("removed sandboxes left by a previous run", "count", n)
	}
	if n, err := st.FailRunningExecutions(ctx, "the server stopped during the execution", time.Now()); err != nil {
		return fmt.Errorf("closing executions of a previous run: %w", err)
	} else if n > 0 {
		log.Warn("marked executions of a previous run as failed", "count", n)
	}
	if err := ensureAdminKey(ctx, st, c.dataDir, c.adminKey, log); err != nil {
		return err
	}

	auth := map[string]image.Auth{}
	for _, item := range strings.Split(c.registryAuth, ",") {
		host, cred, ok := strings.Cut(strings.TrimSpace(item), "=")
		user, pass, ok2 := strings.Cut(cred, ":")
		if ok && ok2 && host != "" {
			auth[host] = image.Auth{Username: user, Password: pass}
		}
	}
	images, err := image.Open(filepath.Join(c.dataDir, "oci"), image.Options{MaxBytes: int64(c.imageCacheMB) << 20, Auth: auth, Logger: log})
	if err != nil {
		return fmt.Errorf("opening the image store: %w", err)
	}
	defer images.Close()
	langImages := map[string]string{}
	for _, item := range strings.Split(c.languageImages, ",") {
		if lang, img, ok := strings.Cut(strings.TrimSpace(item), "="); ok && lang != "" && img != "" {
			langImages[strings.TrimSpace(lang)] = strings.TrimSpace(img)
		}
	}

	var langs []string
	for _, l := range strings.Split(c.stockLangs, ",") {
		if l = strings.TrimSpace(l); l != "" && l != "none" {
			langs = append(langs, l)
		}
	}
	eng := engine.New(engine.Config{
		Limits:                c.limits,
		StockSize:             c.stock,
		StockLanguages:        langs,
		StockTargets:          c.stockTargets,
		StockDemandWindow:     c.stockDemand,
		MaxSandboxes:          c.maxSandbox,
		PoolIdleTimeout:       c.poolIdle,
		MaxWarmMemoryMB:       c.maxWarmMB,
		Quota:                 c.quota,
		SnapshotDir:           filepath.Join(c.dataDir, "snapshots"),
		InstanceDir:           filepath.Join(c.dataDir, "instances"),
		InstanceMeterInterval: c.meterEvery,
		SnapshotCompressAfter: c.compressAfter,
		SessionIdleTimeout:    c.sessionIdle,
		Images:                imageSource{images},
		LanguageImages:        langImages,
		BranchStock:           c.branchStock,
		BranchStockMax:        c.branchStockMax,
		Logger:                log,
	}, driver, st)
	if err := eng.RecoverSnapshots(ctx); err != nil {
		eng.Close(context.Background())
		driver.Close()
		return fmt.Errorf("checking snapshots: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(c.dataDir, "instances"), 0o700); err != nil {
		return err
	}
	if err := eng.RecoverInstances(ctx); err != nil {
		eng.Close(context.Background())
		driver.Close()
		return fmt.Errorf("recovering instances: %w", err)
	}
	var gateway *sshgw.Server
	var sshInfo *api.SSHInfo
	if c.sshPort > 0 {
		gateway, err = sshgw.New(sshgw.Config{HostKeyPath: filepath.Join(c.dataDir, "ssh_host_ed25519_key"), Backend: sshBackend{eng}, Logger: log})
		if err == nil {
			var sln net.Listener
			if sln, err = net.Listen("tcp", net.JoinHostPort(c.host, strconv.Itoa(c.sshPort))); err == nil {
				go gateway.Serve(sln)
				sshInfo = &api.SSHInfo{Host: c.sshHost, Port: sln.Addr().(*net.TCPAddr).Port, HostKey: gateway.HostKey()}
			}
		}
		if err != nil {
			eng.Close(context.Background())
			driver.Close()
			return fmt.Errorf("starting the SSH gateway: %w", err)
		}
	}
	if c.exposeDomain == "none" {
		c.exposeDomain = ""
	}
	srv := &http.Server{
		Handler: api.New(eng, st, api.Config{Version: version, RateLimit: c.rate, Heartbeat: c.heartbeat, Logger: log,
			SSH: sshInfo, PublicURL: c.publicURL, ExposeDomain: c.exposeDomain, Images: images}),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(c.host, strconv.Itoa(c.port)))
	if err != nil {
		eng.Close(context.Background())
		driver.Close()
		return fmt.Errorf("listening: %w", err)
	}
	v, verr := driver.Version(ctx)
	log.Info("faas serving", "addr", ln.Addr().String(), "data_dir", c.dataDir, "database", st.Driver(), "runsc", c.runsc, "runsc_version", v, "runsc_err", verr)
	if ready != nil {
		ready <- ln.Addr().String()
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err = <-errc:
	case <-ctx.Done():
		log.Info("shutting down: draining executions in flight", "timeout", c.shutdownDur)
	}
	sctx, cancel := context.WithTimeout(context.Background(), c.shutdownDur)
	defer cancel()
	_ = srv.Shutdown(sctx)
	if gateway != nil {
		gateway.Close()
	}
	eng.Close(sctx)
	if live := driver.Live(); live > 0 {
		log.Warn("sandboxes still alive at shutdown are being removed", "count", live)
	}
	if derr := driver.Close(); derr != nil {
		log.Warn("releasing the sandbox runtime", "err", derr)
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	log.Info("faas stopped")
	return err
}

// ensureAdminKey makes sure an admin key exists. key (FAAS_API_KEY), when set, is that key.
// Otherwise, on first start, a key is generated, printed once and saved (readable by
// the server's user only) as admin.key in the data dir for the local CLI.
func ensureAdminKey(ctx context.Context, st *store.Store, dataDir, key string, log *slog.Logger) error {
	if key != "" {
		_, err := st.KeyByHash(ctx, api.HashKey(key))
		if err == nil {
			return nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		_, k := api.NewKey("default", "admin (FAAS_API_KEY)", []string{api.ScopeAdmin})
		k.Hash, k.Prefix = api.HashKey(key), key[:min(len(key), 12)]
		k.CreatedAt = time.Now()
		if err := st.CreateKey(ctx, k); err != nil {
			return fmt.Errorf("storing FAAS_API_KEY: %w", err)
		}
		log.Info("admin key from FAAS_API_KEY registered", "key", k.ID)
		return nil
	}
	n, err := st.CountKeys(ctx)
	if err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	plain, k := api.NewKey("default", "admin", []string{api.ScopeAdmin})
	k.CreatedAt = time.Now()
	if err := st.CreateKey(ctx, k); err != nil {
		return fmt.Errorf("creating admin key: %w", err)
	}
	path := filepath.Join(dataDir, "admin.key")
	if err := os.WriteFile(path, []byte(plain+"\n"), 0o600); err != nil {
		return fmt.Errorf("saving admin key: %w", err)
	}
	fmt.Fprintf(os.Stderr, "\nCreated the admin API key (shown once; also saved to %s):\n\n    %s\n\n", path, plain)
	return nil
}
