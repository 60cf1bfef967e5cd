// Package blob is the server's store of attachment bytes: photos, signed
// consent forms and letters whose metadata a record carries (see
// schema.Attachment). It owns the blob directory under the server's data
// directory and nothing else: it knows no HTTP, tokens or records. The
// server checks who may call it (team scope, roles, revoked devices) exactly
// as it does for records, and passes the caller's team to every call, so a
// team's blobs are reachable only under that team.
//
// # What it guarantees
//
//   - Content addressed: a blob is named by the SHA-256 of its bytes and is
//     complete only once the bytes it holds hash to that name. Within a team
//     a blob is stored once however many records attach it (deduplicated per
//     team; teams never share bytes, so knowing a hash gives another team
//     nothing).
//   - Resumable: bytes are appended at an offset the caller states, which
//     must equal the bytes already held; whatever arrived before a cut is
//     kept (fsynced) and Stat reports it, so an upload resumes from the last
//     acknowledged byte.
//   - Bounded: a file may not exceed Config.MaxFileSize, and a team's blobs
//     plus its unfinished uploads (counted at their declared size) may not
//     exceed Config.TeamQuota.
//   - Sniffed: the first bytes must be JPEG, PNG, HEIC (an ISO BMFF ftyp box
//     with a HEIF brand) or PDF; executables and anything else are refused
//     as soon as enough bytes arrive, and the upload is discarded.
//   - Erasable: every blob keeps the records (collection/id) it was uploaded
//     for; EraseRecords drops erased records from those lists and deletes
//     the bytes of a blob no record refers to any more.
//
// # On-disk layout, version 1
//
//	blobs/VERSION                        "doorstep-blobs 1\n"
//	blobs/t-<hex(team)>/objects/<aa>/<sha256>       complete bytes (aa = first two hex digits)
//	blobs/t-<hex(team)>/objects/<aa>/<sha256>.json  {"size","content_type","refs":[{"collection","id"}],"created"}
//	blobs/t-<hex(team)>/uploads/<sha256>.part       bytes received so far
//	blobs/t-<hex(team)>/uploads/<sha256>.json       {"size","content_type","refs","created","enc"}
//
// (complete metadata likewise carries "enc" when the data file is
// encrypted).
//
// Metadata files are replaced atomically (write, fsync, rename, fsync the
// directory). A completed upload is renamed into objects/ after its hash
// is checked. A crash mid-append may leave a part file with unacknowledged
// bytes at its end; the final hash check catches any corruption and the
// upload is then discarded and restarted by the device.
//
// # Backups
//
// Export streams the complete blobs (not unfinished uploads) as the items
// of a backup section, keyed by team and hash rather than by path, each
// file in ExportChunk pieces before its metadata; Import loads them into
// an empty store, checking each file's SHA-256 before keeping it. The
// backup package owns the file format; this package only produces and
// consumes the items.
//
// # Encryption at rest
//
// With Config.EncryptionKey (the server passes its store key) every data
// file the store writes, .part and complete, is a 16-byte random IV and
// the AES-CTR ciphertext of the bytes, and its metadata carries
// "enc": true (crypt.go). Open returns the plaintext (File, seekable for
// Range requests); Export emits plaintext and Import encrypts with its
// own store's key, so a restore with a new key rotates it. Files written
// without a key stay plaintext and readable.
package blob
