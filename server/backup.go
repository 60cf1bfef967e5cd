package server

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/auth"
	"github.com/doorstep-health/doorstep/backup"
	"github.com/doorstep-health/doorstep/blob"
	"github.com/doorstep-health/doorstep/store"
	"github.com/labstack/echo/v4"
)

// BackupContentType is the media type of GET /v1/admin/backup.
const BackupContentType = "application/vnd.doorstep.backup"

// BackupEstimateHeader carries the server's estimate of a streamed
// backup's size in bytes (for a client's progress and ETA).
const BackupEstimateHeader = "X-Doorstep-Backup-Estimate"

// BackupReply is the JSON reply of POST /v1/admin/backups.
type BackupReply struct {
	File        string    `json:"file"`
	Bytes       int64     `json:"bytes"`
	SHA256      string    `json:"sha256"`
	Items       int64     `json:"items"`
	LogPosition uint64    `json:"log_position"`
	Epoch       string    `json:"epoch"`
	CreatedAt   time.Time `json:"created_at"`
}

// WriteBackup writes a complete backup of the records store, the auth store,
// the signing keys, the erasure journal and the attachment files to w (see backup/FORMAT.md), logging progress. Pushes
// and logins go on meanwhile; the backup holds each store as of the moment
// its read transaction opened.
func (s *Server) WriteBackup(ctx context.Context, w io.Writer, progress func(backup.Progress)) (*backup.Manifest, error) {
	rtxn, meta, release, err := s.engine.BackupTxn(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	atxn, err := s.auth.BackupTxn(ctx)
	if err != nil {
		return nil, err
	}
	defer atxn.Discard()
	keys, err := backup.FileItems(s.auth.Config().KeyDir, ".pem")
	if err != nil {
		return nil, err
	}
	journal, err := backup.ReadErasures(s.cfg.ErasureJournal)
	if err != nil {
		return nil, err
	}
	erasures, err := backup.ErasureItems(journal)
	if err != nil {
		return nil, err
	}
	h := backup.Header{
		CreatedAt:   s.now().UTC(),
		ServerID:    hex.EncodeToString(meta.ServerID[:]),
		Epoch:       hex.EncodeToString(meta.Epoch[:]),
		LogPosition: meta.LogPos,
		Layouts:     map[string]uint32{"records": meta.Layout, "auth": auth.StoreLayout, "keys": 1, "erasures": 1, "blobs": blob.ExportVersion},
		Software:    "doorstep",
	}
	s.log.Info("backup started", "log_position", meta.LogPos, "estimate_bytes", meta.Size)
	m, err := backup.Write(ctx, w, h, []backup.Section{
		{Name: "records", Each: func(put func(*backup.Item) error) error {
			return backup.EachIter(rtxn.Iterate(store.IterOptions{Batch: 256}), put)
		}},
		{Name: "auth", Each: func(put func(*backup.Item) error) error {
			return backup.EachIter(atxn.Iterate(store.IterOptions{Batch: 256}), put)
		}},
		{Name: "keys", Items: keys},
		{Name: "erasures", Items: erasures},
		{Name: "blobs", Each: s.blobItems(ctx)},
	}, backup.WriteOptions{Estimate: meta.Size + s.blobs.TotalUsage(), Every: 2 * time.Second, Now: s.now, Progress: func(p backup.Progress) {
		if !p.Done {
			s.log.Info("backup progress", "section", p.Section, "items", p.Items, "bytes", p.Bytes,
				"rate_bytes_per_s", int64(p.Rate()), "eta", p.ETA().Round(time.Second).String())
		}
		if progress != nil {
			progress(p)
		}
	}})
	if err != nil {
		s.log.Warn("backup failed", "err", err)
		return nil, err
	}
	s.log.Info("backup written", "bytes", m.Size, "items", m.Items(), "log_position", meta.LogPos, "sha256", m.SHA256)
	return m, nil
}

// blobItems streams the attachment files into the "blobs" section (see
// blob.Store.Export). It runs after the records snapshot, so every blob a
// record in the backup was uploaded for before it is there.
func (s *Server) blobItems(ctx context.Context) func(put func(*backup.Item) error) error {
	return func(put func(*backup.Item) error) error {
		return s.blobs.Export(ctx, func(k, v []byte) error { return put(&backup.Item{Key: k, Value: v}) })
	}
}

func (s *Server) now() time.Time {
	if s.cfg.Now != nil {
		return s.cfg.Now()
	}
	return time.Now()
}

// requireServiceAdmin admits only an admin whose teams include every team
// on the server: a whole-server backup holds every team's records, so an
// admin scoped to some teams may not take one.
func (s *Server) requireServiceAdmin(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		cl := claimsOf(c)
		teams, err := s.auth.Teams(c.Request().Context())
		if err != nil {
			return err
		}
		for _, t := range teams {
			if !slices.Contains(cl.Teams, t.ID) {
				return problemf(api.CodeForbidden, "a whole-server backup needs an admin of every team; not a member of %q", t.ID)
			}
		}
		return next(c)
	}
}

// backupSlot allows one backup at a time.
func (s *Server) backupSlot() (release func(), err error) {
	select {
	case s.backupBusy <- struct{}{}:
		return func() { <-s.backupBusy }, nil
	default:
		return nil, problemf(api.CodeConflict, "a backup is already running")
	}
}

// streamBackup is GET /v1/admin/backup: the backup file as the body.
func (s *Server) streamBackup(c echo.Context) error {
	release, err := s.backupSlot()
	if err != nil {
		return err
	}
	defer release()
	_, meta, release, err := s.engine.BackupTxn(c.Request().Context()) // for the size estimate only
	if err != nil {
		return err
	}
	release()
	rw := c.Response()
	// A backup of a large store outlasts the server's WriteTimeout: lift
	// the deadline for this response only (the client can still hang up,
	// which cancels the request context and stops the backup).
	if err := http.NewResponseController(rw).SetWriteDeadline(time.Time{}); err != nil {
		s.log.Warn("backup: cannot lift the write deadline; a long backup may be cut off", "err", err)
	}
	rw.Header().Set(echo.HeaderContentType, BackupContentType)
	rw.Header().Set(BackupEstimateHeader, strconv.FormatInt(meta.Size, 10))
	rw.Header().Set("Content-Disposition", `attachment; filename="doorstep.dsbak"`)
	rw.WriteHeader(http.StatusOK)
	m, err := s.WriteBackup(c.Request().Context(), rw, nil)
	if err != nil {
		// Headers are gone; the client sees a file without a trailer,
		// which it refuses (ErrIncomplete).
		s.log.Warn("streamed backup cut short", "err", err)
		s.audit(c, auth.AuditEntry{Action: "server.backup", TargetKind: "backup", TargetID: "stream", Detail: map[string]string{"error": err.Error()}})
		return nil
	}
	s.audit(c, backupAudit("stream", m))
	return nil
}

// backupToDir is POST /v1/admin/backups: writes a backup into the
// configured backup directory and answers with its name and checksums.
func (s *Server) backupToDir(c echo.Context) error {
	if s.cfg.BackupDir == "" {
		return problemf(api.CodeNotFound, "no backup directory configured (serve --backup-dir)")
	}
	release, err := s.backupSlot()
	if err != nil {
		return err
	}
	defer release()
	name := fmt.Sprintf("doorstep-%s.dsbak", s.now().UTC().Format("20060102T150405.000Z"))
	if err := os.MkdirAll(s.cfg.BackupDir, 0o700); err != nil {
		return fmt.Errorf("backup dir: %w", err)
	}
	path := filepath.Join(s.cfg.BackupDir, name)
	var m *backup.Manifest
	err = backup.WriteFile(path, func(w io.Writer) error {
		var err error
		m, err = s.WriteBackup(c.Request().Context(), w, nil)
		return err
	})
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	s.audit(c, backupAudit(name, m))
	return c.JSON(http.StatusCreated, BackupReply{
		File: name, Bytes: m.Size, SHA256: m.SHA256, Items: m.Items(),
		LogPosition: m.Header.LogPosition, Epoch: m.Header.Epoch, CreatedAt: m.Header.CreatedAt,
	})
}

// journalErasures appends erased records to the erasure journal.
func (s *Server) journalErasures(refs []api.RecordRef) error {
	now := s.now().UTC()
	es := make([]backup.Erasure, len(refs))
	for i, r := range refs {
		es[i] = backup.Erasure{At: now, Team: r.Team, Collection: r.Collection, ID: r.ID}
	}
	return backup.AppendErasures(s.cfg.ErasureJournal, es)
}

// backupAudit is the audit entry of a backup taken: where, how much, which
// log position; never contents.
func backupAudit(target string, m *backup.Manifest) auth.AuditEntry {
	return auth.AuditEntry{Action: "server.backup", TargetKind: "backup", TargetID: target, Detail: map[string]string{
		"bytes": strconv.FormatInt(m.Size, 10), "items": strconv.FormatInt(m.Items(), 10),
		"log_position": strconv.FormatUint(m.Header.LogPosition, 10), "sha256": m.SHA256, "epoch": m.Header.Epoch,
	}}
}
