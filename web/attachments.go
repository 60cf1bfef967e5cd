package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/blob"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/schema"
)

// Blobs is the attachment store the record page shows files from
// (*blob.Store satisfies it). Every call names the team, as the API's blob
// routes do.
type Blobs interface {
	Stat(ctx context.Context, team, sum string) (blob.Info, error)
	Open(ctx context.Context, team, sum string) (blob.File, blob.Info, error)
}

// attView is one attached file on the record page.
type attView struct {
	Name        string
	ContentType string
	Size        string
	CapturedAt  time.Time
	CapturedBy  string
	// URL is the console route serving the file, once it is on the server.
	URL string
	// Image: a JPEG or PNG the browser can show as a thumbnail.
	Image bool
	// Pending: not (all) on the server yet; Received says how much is.
	Pending  bool
	Received string
}

// attachments returns the files named by an attachment field's values:
// a register's winner (or every value in conflict), a log's entries.
func attachmentValues(f *crdt.Field) []schema.Attachment {
	var raws [][]byte
	switch f.Type {
	case crdt.Register:
		if f.Conflict() {
			for _, e := range f.Entries {
				raws = append(raws, e.Value)
			}
		} else if w, ok := f.Winner(); ok {
			raws = append(raws, w.Value)
		}
	case crdt.Log:
		for _, e := range f.Entries {
			raws = append(raws, e.Value)
		}
	}
	var out []schema.Attachment
	for _, raw := range raws {
		v, err := schema.DecodeValue(raw)
		if err != nil {
			continue
		}
		if a, err := schema.ParseAttachment(v); err == nil {
			out = append(out, a)
		}
	}
	return out
}

// attachmentViews describes the field's files for the record page: their
// metadata, whether the server holds them yet, and where the console
// serves them (a route under the record, behind the session).
func (c *Console) attachmentViews(ctx context.Context, ref api.RecordRef, field string, f *crdt.Field, p *people) []attView {
	var out []attView
	for _, a := range attachmentValues(f) {
		av := attView{Name: a.Name, ContentType: a.ContentType, Size: byteSize(a.Size), CapturedAt: a.CapturedAt, CapturedBy: p.name(a.CapturedBy)}
		if av.Name == "" {
			av.Name = a.ContentType + " " + a.SHA256[:8]
		}
		info, err := c.blobStat(ctx, ref.Team, a.SHA256)
		switch {
		case err == nil && info.Complete && info.Size == a.Size:
			av.URL = "/console/teams/" + url.PathEscape(ref.Team) + "/records/" + url.PathEscape(ref.Collection) + "/" + url.PathEscape(ref.ID) + "/attachments/" + url.PathEscape(field) + "/" + a.SHA256
			av.Image = a.ContentType == "image/jpeg" || a.ContentType == "image/png"
		case err == nil:
			av.Pending, av.Received = true, fmt.Sprintf("%s of %s received", byteSize(info.Offset), byteSize(a.Size))
		default:
			av.Pending = true
		}
		out = append(out, av)
	}
	return out
}

func (c *Console) blobStat(ctx context.Context, team, sum string) (blob.Info, error) {
	if c.cfg.Blobs == nil {
		return blob.Info{}, blob.ErrNotFound
	}
	return c.cfg.Blobs.Stat(ctx, team, sum)
}

// attachment serves one file attached to a record the viewer may read:
// the record must be in the viewer's team (the engine checks, as for the
// record page) and name the file in the given attachment field, so a hash
// alone, even of another record of the team, opens nothing. Reading it is
// a read of the record, audited as one.
func (c *Console) attachment(w http.ResponseWriter, r *http.Request, v *viewer) {
	ctx, ref, field, sum := r.Context(), refOf(r), r.PathValue("field"), r.PathValue("sha256")
	rec, err := c.cfg.Engine.Record(ctx, v.caller, ref)
	if err != nil {
		c.failErr(w, r, v, err)
		return
	}
	sf, ok := c.sch.Field(ref.Collection, field)
	f := rec.Field(field)
	if !ok || sf.Type != schema.TypeAttachment || f == nil || !slices.ContainsFunc(attachmentValues(f), func(a schema.Attachment) bool { return a.SHA256 == sum }) {
		c.fail(w, r, v, http.StatusNotFound, "This record has no such attachment.")
		return
	}
	if c.cfg.Blobs == nil {
		c.fail(w, r, v, http.StatusNotFound, "The file is not on the server yet (pending upload from the device).")
		return
	}
	file, info, err := c.cfg.Blobs.Open(ctx, ref.Team, sum)
	if errors.Is(err, blob.ErrNotFound) {
		c.fail(w, r, v, http.StatusNotFound, "The file is not on the server yet (pending upload from the device).")
		return
	}
	if err != nil {
		c.failErr(w, r, v, err)
		return
	}
	defer file.Close()
	if err := c.auditRead(r, ref); err != nil {
		c.fail(w, r, v, http.StatusServiceUnavailable, "The audit trail cannot be written just now, so the file is not shown. Try again shortly.")
		return
	}
	h := w.Header()
	h.Set("Content-Type", info.ContentType)
	h.Set("Cache-Control", "private, no-store")
	// Images show inline (thumbnails); anything else downloads. The
	// type is the one the server sniffed on upload, and nosniff (set on
	// every console answer) keeps the browser to it.
	if info.ContentType == "image/jpeg" || info.ContentType == "image/png" {
		h.Set("Content-Disposition", "inline")
	} else {
		h.Set("Content-Disposition", "attachment")
	}
	http.ServeContent(w, r, "", time.Time{}, file)
}

func byteSize(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
