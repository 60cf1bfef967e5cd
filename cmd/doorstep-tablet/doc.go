// Command doorstep-tablet is a simulated tablet built on the Doorstep client
// SDK (package client), so a newcomer can watch offline work merge:
//
//	doorstep-tablet login --server http://127.0.0.1:8080 --user amara
//	doorstep-tablet sync --user amara
//	doorstep-tablet people --user amara
//	doorstep-tablet set --user amara --collection people --id ID --field preferred_name --value Bill
//	doorstep-tablet clear --user amara --collection people --id ID --field preferred_name
//	doorstep-tablet show --user amara --collection people --id ID
//	doorstep-tablet conflicts --user amara
//	doorstep-tablet resolve --user amara --collection people --id ID --field cfs --value 6
//	doorstep-tablet status --user amara
//
// Each tablet keeps its replica in --dir (default ./data/tablet-USER),
// encrypted with a key in a file it creates there; a real app keeps that
// key in the platform keystore. set and resolve write offline, durably, with
// no network; sync pushes and pulls. The login password comes from
// DOORSTEP_PASSWORD, else the demo password. The tool talks to the server
// only through the SDK; it imports no server package.
//
// The command owns the CLI, the key file and the output formatting; the
// replica, outbox, sync and conflicts are the SDK's. It must not be
// imported, and must not import server, sync, store or auth.
package main
