package blob

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/doorstep-health/doorstep/schema"
)

// sweeper runs Sweep every SweepEvery until Close.
func (s *Store) sweeper() {
	defer close(s.swept)
	t := time.NewTicker(s.cfg.SweepEvery)
	defer t.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-s.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		n, err := s.Sweep(ctx)
		if err != nil && ctx.Err() == nil {
			s.cfg.Logger.Warn("blob: sweeping expired uploads", "err", err)
		}
		if n > 0 {
			s.cfg.Logger.Info("blob: expired uploads removed", "uploads", n, "ttl", s.cfg.UploadTTL.String())
		}
	}
}

// Sweep removes every unfinished upload whose last write is older than
// UploadTTL, releasing its reservation against the team's quota, and
// leftovers of interrupted metadata writes and imports as old. It returns
// how many uploads it removed. An upload being written is skipped (its
// lock is held) and looked at again on the next sweep.
func (s *Store) Sweep(ctx context.Context) (int, error) {
	ents, err := os.ReadDir(s.cfg.Dir)
	if err != nil {
		return 0, fmt.Errorf("blob: sweep: %w", err)
	}
	cutoff := s.cfg.Now().Add(-s.cfg.UploadTTL)
	removed := 0
	for _, e := range ents {
		team, ok := teamOfDir(e.Name())
		if !ok || !e.IsDir() {
			continue
		}
		dir := filepath.Join(s.cfg.Dir, e.Name(), "uploads")
		files, err := os.ReadDir(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		} else if err != nil {
			return removed, fmt.Errorf("blob: sweep: %w", err)
		}
		for _, f := range files {
			if err := ctx.Err(); err != nil {
				return removed, err
			}
			name := f.Name()
			if sum, ok := strings.CutSuffix(name, ".json"); ok && schema.IsSHA256(sum) {
				gone, err := s.expire(ctx, team, sum, cutoff)
				if err != nil {
					return removed, err
				}
				if gone {
					removed++
				}
				continue
			}
			if strings.HasSuffix(name, ".tmp") || strings.HasSuffix(name, ".import") {
				if fi, err := f.Info(); err == nil && fi.ModTime().Before(cutoff) {
					os.Remove(filepath.Join(dir, name))
				}
			}
		}
	}
	return removed, nil
}

// expire removes the team's upload named sum if nothing was written to it
// since cutoff.
func (s *Store) expire(ctx context.Context, team, sum string, cutoff time.Time) (bool, error) {
	lctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	unlock, err := s.lock(lctx, team+"\x00"+sum)
	if err != nil {
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		return false, nil // being written: not idle
	}
	defer unlock()
	up := s.uploadPath(team, sum)
	mp := strings.TrimSuffix(up, ".part") + ".json"
	var last time.Time
	for _, p := range []string{up, mp} {
		fi, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		} else if err != nil {
			return false, fmt.Errorf("blob: sweep: %w", err)
		}
		if fi.ModTime().After(last) {
			last = fi.ModTime()
		}
	}
	if last.IsZero() || !last.Before(cutoff) {
		return false, nil
	}
	m, err := readMeta(mp)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := os.Remove(up); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("blob: sweep: %w", err)
	}
	if err := os.Remove(mp); err != nil {
		return false, fmt.Errorf("blob: sweep: %w", err)
	}
	s.release(team, m.Size)
	return true, syncDir(filepath.Dir(mp))
}
