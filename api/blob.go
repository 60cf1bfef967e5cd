package api

// Attachment upload and download (docs/PROTOCOL.md "Attachments"): the
// bytes of a file a record's attachment field describes travel on their
// own routes, content addressed by SHA-256 under the team:
//
//	HEAD  /v1/teams/{team}/blobs/{sha256}  what the server holds (headers only)
//	PATCH /v1/teams/{team}/blobs/{sha256}  append bytes at Upload-Offset
//	GET   /v1/teams/{team}/blobs/{sha256}  the complete bytes (Range allowed)
const (
	// HeaderUploadOffset is the byte offset a PATCH body starts at, and in
	// replies (and on upload_offset_mismatch) the bytes the server holds.
	HeaderUploadOffset = "Upload-Offset"
	// HeaderUploadLength is the file's full size in bytes.
	HeaderUploadLength = "Upload-Length"
	// HeaderBlobComplete is "true" when the server holds every byte and
	// they hash to the name, else "false".
	HeaderBlobComplete = "Doorstep-Blob-Complete"
	// HeaderBlobRecord names the record the file is attached to, as
	// "collection/id"; required on PATCH. Erasing every record a blob is
	// attached to deletes the blob.
	HeaderBlobRecord = "Doorstep-Record"
	// BlobUploadContentType is the content type of a PATCH body.
	BlobUploadContentType = "application/offset+octet-stream"
)

// BlobStatus is the JSON reply to a PATCH: what the server now holds.
type BlobStatus struct {
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
	// Offset is the number of bytes held; the next PATCH starts there.
	Offset   int64 `json:"offset"`
	Complete bool  `json:"complete"`
	// ContentType is the sniffed type once enough bytes are held.
	ContentType string `json:"content_type,omitempty"`
}
