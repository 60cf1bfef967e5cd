package server

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/blob"
	"github.com/labstack/echo/v4"
)

// blobCodes maps the blob store's sentinel errors to api codes.
var blobCodes = []struct {
	target error
	code   api.Code
}{
	{blob.ErrNotFound, api.CodeNotFound},
	{blob.ErrBadRequest, api.CodeBadRequest},
	{blob.ErrTooLarge, api.CodeBlobTooLarge},
	{blob.ErrQuota, api.CodeBlobQuota},
	{blob.ErrOffset, api.CodeUploadOffset},
	{blob.ErrSizeMismatch, api.CodeConflict},
	{blob.ErrHashMismatch, api.CodeBlobHash},
	{blob.ErrRefusedType, api.CodeBlobTypeRefused},
	{blob.ErrBusy, api.CodeUploadBusy},
}

func blobError(err error) error {
	for _, bc := range blobCodes {
		if errors.Is(err, bc.target) {
			detail := err.Error()
			if bc.code == api.CodeNotFound {
				detail = "no such blob in this team"
			}
			return &Error{Code: bc.code, Detail: strings.TrimPrefix(detail, "blob: "), Err: err}
		}
	}
	return err
}

func setBlobHeaders(c echo.Context, info blob.Info) {
	h := c.Response().Header()
	h.Set(api.HeaderUploadOffset, strconv.FormatInt(info.Offset, 10))
	h.Set(api.HeaderUploadLength, strconv.FormatInt(info.Size, 10))
	h.Set(api.HeaderBlobComplete, strconv.FormatBool(info.Complete))
	h.Set(echo.HeaderCacheControl, "no-store")
}

// headBlob handles HEAD /v1/teams/:team/blobs/:digest: what the server
// holds of the team's blob, in headers. 404 when nothing.
func (s *Server) headBlob(c echo.Context) error {
	info, err := s.blobs.Stat(c.Request().Context(), c.Param("team"), c.Param("digest"))
	if err != nil {
		return blobError(err)
	}
	setBlobHeaders(c, info)
	return c.NoContent(http.StatusOK)
}

// patchBlob handles PATCH /v1/teams/:team/blobs/:digest: append the body
// at Upload-Offset. Bytes that arrive before a cut are kept; the reply (or
// a later HEAD) says how many are held.
func (s *Server) patchBlob(c echo.Context) error {
	req := c.Request()
	if ct := req.Header.Get(echo.HeaderContentType); ct != api.BlobUploadContentType {
		return problemf(api.CodeUnsupportedMedia, "the body must be %s", api.BlobUploadContentType)
	}
	off, err1 := strconv.ParseInt(req.Header.Get(api.HeaderUploadOffset), 10, 64)
	size, err2 := strconv.ParseInt(req.Header.Get(api.HeaderUploadLength), 10, 64)
	if err1 != nil || err2 != nil || off < 0 || size < 1 {
		return problemf(api.CodeBadRequest, "%s and %s headers with byte counts are required", api.HeaderUploadOffset, api.HeaderUploadLength)
	}
	coll, id, ok := strings.Cut(req.Header.Get(api.HeaderBlobRecord), "/")
	if !ok || coll == "" || id == "" {
		return problemf(api.CodeBadRequest, "the %s header must name the record as collection/id", api.HeaderBlobRecord)
	}
	if s.cfg.Schema != nil {
		if col, ok := s.cfg.Schema.Collection(coll); !ok || len(col.AttachmentFields()) == 0 {
			return problemf(api.CodeBadRequest, "collection %q has no attachment field", coll)
		}
	}
	// An attachment for an erased record is never stored again (a device
	// may not have heard of the erasure yet).
	if erased, err := s.engine.Erased(req.Context(), callerOf(c), api.RecordRef{Team: c.Param("team"), Collection: coll, ID: id}); err != nil {
		return err
	} else if erased {
		return problemf(api.CodeBlobRecordErased, "record %s/%s was erased; the file is not stored", coll, id)
	}
	if req.ContentLength > 0 && off+req.ContentLength > size {
		return problemf(api.CodeConflict, "a body of %d bytes at offset %d runs past the %d bytes of the file", req.ContentLength, off, size)
	}
	info, err := s.blobs.Write(req.Context(), c.Param("team"), c.Param("digest"), blob.Ref{Collection: coll, ID: id}, size, off, req.Body)
	var oe *blob.OffsetError
	if errors.As(err, &oe) {
		c.Response().Header().Set(api.HeaderUploadOffset, strconv.FormatInt(oe.Want, 10))
	}
	if err != nil {
		if info.Offset > 0 && !errors.Is(err, blob.ErrOffset) {
			c.Response().Header().Set(api.HeaderUploadOffset, strconv.FormatInt(info.Offset, 10))
		}
		return blobError(err)
	}
	setBlobHeaders(c, info)
	return c.JSON(http.StatusOK, api.BlobStatus{SHA256: info.SHA256, Size: info.Size, Offset: info.Offset, Complete: info.Complete, ContentType: info.ContentType})
}

// getBlob handles GET /v1/teams/:team/blobs/:digest: the complete bytes,
// never compressed, with Range support so a download resumes too.
func (s *Server) getBlob(c echo.Context) error {
	f, info, err := s.blobs.Open(c.Request().Context(), c.Param("team"), c.Param("digest"))
	if err != nil {
		return blobError(err)
	}
	defer f.Close()
	res := c.Response()
	if gw, ok := res.Writer.(*gzipWriter); ok {
		gw.decided = true // photos and PDFs are compressed already; keep Content-Length and ranges
		res.Writer = gw.ResponseWriter
	}
	h := res.Header()
	h.Set(echo.HeaderContentType, info.ContentType)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set(echo.HeaderContentDisposition, "attachment")
	h.Set(echo.HeaderCacheControl, "private, no-store")
	h.Set("ETag", `"`+info.SHA256+`"`)
	http.ServeContent(res, c.Request(), "", time.Time{}, f)
	return nil
}

// eraseBlobs deletes the attachments of erased records (those no other
// record of the team was uploaded for). Called for an erasure already
// done. The named record is always included, so retrying an erasure whose
// blob deletion failed deletes its blobs (the engine reports no records for
// an erasure already done; cascaded records are then not covered).
func (s *Server) eraseBlobs(c echo.Context, team string, recs []api.RecordRef) ([]string, error) {
	refs := make([]blob.Ref, 0, len(recs))
	for _, r := range recs {
		if r.Team == team || r.Team == "" {
			refs = append(refs, blob.Ref{Collection: r.Collection, ID: r.ID})
		}
	}
	return s.blobs.EraseRecords(c.Request().Context(), team, refs)
}
