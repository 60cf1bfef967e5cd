package main

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/backup"
	"github.com/doorstep-health/doorstep/internal/restore"
	"github.com/doorstep-health/doorstep/server"
	dsync "github.com/doorstep-health/doorstep/sync"
	"golang.org/x/crypto/bcrypt"
)

// BackupResult is what one backup-and-restore run measured, with copying
// the stopped data directory in the same run for comparison.
type BackupResult struct {
	People, Fields int
	DataBytes      int64 // data directory, allocated bytes (sparse files count what they hold)
	FileBytes      int64 // the backup file
	Items          int64
	Backup         time.Duration // online backup to a file, fsynced
	Restore        restore.Result
	RestoreTotal   time.Duration
	Copy           time.Duration // cp -a --sparse=always of the stopped directory, then sync
	Scrub          time.Duration // one erasure, scrubbed from the data files
}

// BackupBench fills a team of people × fields (as Bootstrap does), takes an
// online backup through server.WriteBackup, erases one person (timing the
// scrub), stops the server, copies the data directory with cp, and restores
// the backup into a new directory with internal/restore (verify, load,
// digest check, new epoch).
func BackupBench(ctx context.Context, dir string, people, fields int) (BackupResult, error) {
	res := BackupResult{People: people, Fields: fields}
	tmp, err := os.MkdirTemp(dir, "doorstep-backup-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(tmp)
	data := filepath.Join(tmp, "data")
	srv, err := server.New(ctx, server.Config{DataDir: data, BcryptCost: bcrypt.MinCost, DeviceRate: -1, AuthRate: -1, NoSchema: true,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return res, err
	}
	defer srv.Shutdown(ctx)
	if _, err := srv.Auth().CreateTeam(ctx, "team-0", "Team 0"); err != nil {
		return res, err
	}
	if err := buildTeam(ctx, srv.Engine(), "team-0", people, fields); err != nil {
		return res, err
	}
	file := filepath.Join(tmp, "b.dsbak")
	start := time.Now()
	var m *backup.Manifest
	if err := backup.WriteFile(file, func(w io.Writer) error {
		m, err = srv.WriteBackup(ctx, w, nil)
		return err
	}); err != nil {
		return res, err
	}
	res.Backup = time.Since(start)
	res.FileBytes, res.Items = m.Size, m.Items()

	start = time.Now()
	rep, err := srv.Engine().Erase(ctx, dsync.Caller{User: "bench", Teams: []string{"team-0"}}, api.RecordRef{Team: "team-0", Collection: "people", ID: "person-00042"}, false)
	if err != nil {
		return res, err
	}
	if !rep.Scrubbed {
		return res, fmt.Errorf("erasure not scrubbed: %+v", rep)
	}
	res.Scrub = time.Since(start)
	if err := srv.Shutdown(ctx); err != nil {
		return res, err
	}
	if res.DataBytes, err = allocated(data); err != nil {
		return res, err
	}

	start = time.Now()
	if out, err := exec.Command("cp", "-a", "--sparse=always", data, filepath.Join(tmp, "copy")).CombinedOutput(); err != nil {
		return res, fmt.Errorf("cp: %v: %s", err, out)
	}
	if out, err := exec.Command("sync", "-f", filepath.Join(tmp, "copy")).CombinedOutput(); err != nil {
		return res, fmt.Errorf("sync: %v: %s", err, out)
	}
	res.Copy = time.Since(start)

	start = time.Now()
	if res.Restore, err = restore.Run(ctx, restore.Options{In: file, Data: filepath.Join(tmp, "restored")}); err != nil {
		return res, err
	}
	res.RestoreTotal = time.Since(start)
	return res, nil
}

// allocated sums the bytes the files under dir occupy on disk.
func allocated(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			n += st.Blocks * 512
		} else {
			n += info.Size()
		}
		return nil
	})
	return n, err
}

func runBackup(ctx context.Context, dir string, people, fields int) error {
	fmt.Printf("backup: online backup and restore of a team of %d people with %d fields each, next to copying the stopped directory\n\n", people, fields)
	r, err := BackupBench(ctx, dir, people, fields)
	if err != nil {
		return err
	}
	mbps := func(b int64, d time.Duration) string {
		return fmt.Sprintf("%.0f MiB/s", float64(b)/(1<<20)/d.Seconds())
	}
	fmt.Println("| people × fields | data dir | backup file | items | online backup | restore (verify + load + check) | cp -a + sync of the stopped dir | erasure scrub |\n|---|---:|---:|---:|---:|---:|---:|---:|")
	fmt.Printf("| %d × %d | %.0f MiB | %.0f MiB | %d | %s (%s) | %s (%s + %s + %s; %s) | %s (%s) | %s |\n\n",
		r.People, r.Fields, float64(r.DataBytes)/(1<<20), float64(r.FileBytes)/(1<<20), r.Items,
		r.Backup.Round(time.Millisecond), mbps(r.FileBytes, r.Backup),
		r.RestoreTotal.Round(time.Millisecond), r.Restore.Verify.Round(time.Millisecond), r.Restore.Load.Round(time.Millisecond),
		r.Restore.Check.Round(time.Millisecond), mbps(r.FileBytes, r.RestoreTotal),
		r.Copy.Round(time.Millisecond), mbps(r.DataBytes, r.Copy), r.Scrub.Round(time.Millisecond))
	return nil
}
