package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	gosync "sync"
	"time"

	"github.com/doorstep-health/doorstep/auth"
	"github.com/doorstep-health/doorstep/blob"
	"github.com/doorstep-health/doorstep/store"
	storebadger "github.com/doorstep-health/doorstep/store/badger"
	dsync "github.com/doorstep-health/doorstep/sync"
	"github.com/doorstep-health/doorstep/web"
	"github.com/labstack/echo/v4"
)

// Server is the Doorstep HTTP server: an echo app over one sync engine and
// one auth service, both of which it opens and closes.
type Server struct {
	cfg    Config
	log    *slog.Logger
	echo   *echo.Echo
	engine *dsync.Engine
	auth   *auth.Service
	blobs  *blob.Store

	deviceLimit *limiter
	authLimit   *limiter
	metrics     *metrics
	syncLatency syncTimer
	syncSlots   chan struct{} // one token per sync being processed (its body read)
	admit       *admission
	pipe        pipeline // pipelined pushes (pipeline.go)
	schema      *schemaDoc
	console     *web.Console  // the coordinator console under /console/
	backupBusy  chan struct{} // one token while a backup is written

	mu     gosync.Mutex
	http   *http.Server
	closed bool
}

// openAuth opens the auth service over cfg.AuthStore, or over Badger in
// DataDir/auth (encrypted with EncryptionKey), with the signing keys in
// DataDir/keys.
func openAuth(ctx context.Context, cfg *Config) (*auth.Service, error) {
	acfg := auth.Config{
		Issuer: cfg.Issuer, Audience: cfg.Audience, AccessTTL: cfg.AccessTTL, RefreshTTL: cfg.RefreshTTL, ReuseGrace: cfg.ReuseGrace,
		BcryptCost: cfg.BcryptCost, KeyDir: filepath.Join(cfg.DataDir, "keys"),
		MaxDevicesPerUser: cfg.MaxDevicesPerUser, AllowDemo: cfg.Demo,
		LockoutThreshold: cfg.LockoutThreshold, LockoutBase: cfg.LockoutBase, LockoutMax: cfg.LockoutMax,
		Now: cfg.Now, Logger: cfg.Logger, External: cfg.External,
	}
	kv := cfg.AuthStore
	if kv == nil {
		var err error
		if kv, err = OpenAuthBadger(cfg.DataDir, cfg.EncryptionKey, cfg.Logger); err != nil {
			return nil, err
		}
	}
	return auth.New(ctx, kv, acfg)
}

// OpenAuthBadger opens the embedded auth store, Badger in DataDir/auth,
// encrypted with key if set. The auth store is small (users, devices,
// tokens, the audit trail), so it gets Badger's small memory settings.
func OpenAuthBadger(dataDir string, key []byte, logger *slog.Logger) (store.KV, error) {
	kv, err := storebadger.Open(storebadger.Options{Dir: filepath.Join(dataDir, "auth"), Logger: logger, SmallMemory: true, EncryptionKey: key})
	if err != nil {
		return nil, fmt.Errorf("open auth store: %w", err)
	}
	return kv, nil
}

// New opens the record store (cfg.Records, or Badger in DataDir/records)
// and the auth store (cfg.AuthStore, or Badger in DataDir/auth, keys in
// DataDir/keys) and builds the routes.
func New(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.DataDir == "" {
		if cfg.Records != nil {
			cfg.Records.Close()
		}
		return nil, errors.New("server: DataDir is required")
	}
	cfg.defaults()
	a, err := openAuth(ctx, &cfg)
	if err != nil {
		if cfg.Records != nil {
			cfg.Records.Close() // owned from New on
		}
		return nil, fmt.Errorf("server: %w", err)
	}
	records, err := openRecords(&cfg)
	if err != nil {
		a.Close()
		return nil, fmt.Errorf("server: %w", err)
	}
	opts := dsync.Options{
		Store:   records,
		Wall:    cfg.Now,
		MaxSkew: cfg.MaxSkew,
		Logger:  cfg.Logger,

		PageBytes:      cfg.PageBytes,
		OverlapCommits: cfg.OverlapCommits, // sync/overlap.go
	}
	if !cfg.NoSchema {
		opts.Validator = cfg.Schema
	}
	eng, err := dsync.Open(ctx, opts)
	if err != nil {
		a.Close()
		return nil, fmt.Errorf("server: %w", err)
	}
	blobs, err := blob.Open(blob.Config{Dir: filepath.Join(cfg.DataDir, "blobs"), MaxFileSize: cfg.MaxBlobSize, TeamQuota: cfg.BlobTeamQuota,
		UploadTTL: cfg.UploadTTL, Now: cfg.Now, Logger: cfg.Logger, EncryptionKey: cfg.EncryptionKey})
	if err != nil {
		eng.Close()
		a.Close()
		return nil, fmt.Errorf("server: %w", err)
	}
	s := &Server{
		cfg: cfg, log: cfg.Logger, engine: eng, auth: a, blobs: blobs,
		deviceLimit: newLimiter(cfg.DeviceRate, cfg.DeviceBurst, 100_000, time.Now),
		authLimit:   newLimiter(cfg.AuthRate, cfg.AuthBurst, 100_000, time.Now),
		syncSlots:   make(chan struct{}, cfg.MaxConcurrentSyncs),
		admit:       newAdmission(&cfg),
		backupBusy:  make(chan struct{}, 1),
	}
	s.pipe.holdMax, s.pipe.holdTotal = max(cfg.PipelineHoldBytes, 0), cfg.SyncMemoryBudget/(2*SyncMemoryFactor) // pipeline.go
	if s.schema, err = newSchemaDoc(s); err != nil {
		blobs.Close()
		eng.Close()
		a.Close()
		return nil, err
	}
	s.metrics = newMetrics(s)
	s.syncLatency = syncTimer{s.metrics.sync}
	if err := s.newConsole(); err != nil {
		blobs.Close()
		eng.Close()
		a.Close()
		return nil, fmt.Errorf("server: %w", err)
	}
	s.routes()
	return s, nil
}

// Auth returns the auth service, for the binary's admin commands and tests.
func (s *Server) Auth() *auth.Service { return s.auth }

// Engine returns the sync engine.
func (s *Server) Engine() *dsync.Engine { return s.engine }

// Handler returns the HTTP handler with every route and middleware.
func (s *Server) Handler() http.Handler { return s.echo }

func (s *Server) routes() {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.errorHandler
	e.IPExtractor = echo.ExtractIPDirect()
	if s.cfg.TrustProxy {
		e.IPExtractor = echo.ExtractIPFromXFFHeader()
	}
	e.Use(requestID)
	e.Use(s.logRequests)
	e.Use(s.recoverPanics)
	e.Use(gzipResponses)

	jsonLimit := bodyLimit(s.cfg.MaxJSONBody)
	e.GET("/healthz", s.healthz)
	e.GET("/readyz", s.readyz, s.limitAuth) // readyz writes durably: limit it per address
	e.GET("/metrics", s.metricsHandler())
	e.GET("/v1/openapi.yaml", serveOpenAPI)
	e.POST("/v1/auth/login", s.login, jsonLimit, s.limitAuth)
	e.POST("/v1/auth/refresh", s.refresh, jsonLimit, s.limitAuth)
	if s.auth.HasExternalIssuer() {
		e.POST("/v1/auth/exchange", s.exchange, jsonLimit, s.limitAuth)
	}
	e.GET("/v1/schema", s.getSchema, s.authenticate, s.limitDevice)
	e.POST("/v1/auth/logout", s.logout, jsonLimit, s.authenticate, s.limitDevice)
	e.POST("/v1/auth/password", s.changePassword, jsonLimit, s.limitAuth, s.authenticate, s.limitDevice)
	e.POST("/v1/sync", s.sync, markMsgpack, bodyLimit(s.cfg.MaxSyncBody), s.authenticateSync, s.limitDevice)

	adm := e.Group("/v1/admin", jsonLimit, s.authenticate, s.limitDevice, requireRole("admin"), s.auditAdmin)
	adm.POST("/teams", s.createTeam)
	adm.GET("/teams", s.listTeams)
	adm.POST("/users", s.createUser)
	adm.GET("/users", s.listUsers)
	adm.GET("/users/:id", s.getUser)
	adm.PATCH("/users/:id", s.patchUser)
	adm.DELETE("/users/:id", s.deleteUser)
	adm.GET("/audit", s.listAudit)
	adm.GET("/users/:id/devices", s.listDevices)
	adm.POST("/devices/:id/revoke", s.revokeDevice)
	adm.GET("/quarantine", s.listQuarantine)
	adm.POST("/quarantine/:id/reapply", s.reapply)
	adm.POST("/erasures", s.erase)
	adm.GET("/backup", s.streamBackup, s.requireServiceAdmin)
	adm.POST("/backups", s.backupToDir, s.requireServiceAdmin)

	blobs := e.Group("/v1/teams/:team/blobs", s.authenticate, s.limitDevice, requireTeam) // every role, as for records
	blobs.HEAD("/:digest", s.headBlob)
	blobs.PATCH("/:digest", s.patchBlob)
	blobs.GET("/:digest", s.getBlob)

	rev := e.Group("/v1/teams/:team", jsonLimit, s.authenticate, s.limitDevice, requireRole("coordinator"), requireTeam)
	rev.GET("/records", s.changedRecords)
	rev.GET("/records/:collection/:id", s.getRecord)
	rev.GET("/records/:collection/:id/history", s.getHistory)
	rev.GET("/conflicts", s.listConflicts)
	rev.POST("/records/:collection/:id/resolve", s.resolve)
	rev.GET("/search", s.searchPeople)
	rev.GET("/outcomes", s.outcomes)
	s.mountConsole(e)
	s.echo = e
}

// Serve listens on addr and serves until ctx is done, then shuts down
// gracefully (see Shutdown) with up to 30 s for in-flight requests.
func (s *Server) Serve(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("server: listen: %w", err)
	}
	return s.ServeListener(ctx, ln)
}

// ServeListener is Serve on an existing listener.
func (s *Server) ServeListener(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           s.echo,
		ReadTimeout:       s.cfg.ReadTimeout,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		WriteTimeout:      s.cfg.WriteTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return errors.New("server: closed")
	}
	s.http = hs
	s.mu.Unlock()
	s.console.StartWarm() // outcomes ready before the first coordinator asks
	s.log.Info("serving", "addr", ln.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("server: %w", err)
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err := s.Shutdown(sctx)
		<-errc
		return err
	}
}

// Shutdown stops accepting connections, waits for in-flight requests (up to
// ctx's deadline), then closes the engine and the auth store. It is safe to
// call more than once and on a server that never called Serve.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	hs := s.http
	s.mu.Unlock()
	var errs []error
	if hs != nil {
		if err := hs.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("http shutdown: %w", err))
		}
	}
	s.console.Close()
	s.blobs.Close() // stops the expired-upload sweeper
	if err := s.engine.Close(); err != nil {
		errs = append(errs, err)
	}
	if err := s.auth.Close(); err != nil {
		errs = append(errs, err)
	}
	s.log.Info("server stopped")
	return errors.Join(errs...)
}
