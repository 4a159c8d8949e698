// Package documents holds the three SSM documents of a drain (stop intake, report status,
// unregister) as the fleet stack creates them. Their shell cannot run in the local world (the
// emulator maps each document to the runner simulator's action), so a test lints it: no
// blocking stop, no IMDSv1, unregister only after a stopped check.
package documents

import "embed"

// Files of the documents in FS, by role.
const (
	StopIntake = "stop_intake.yaml"
	Status     = "status.yaml"
	Unregister = "unregister.yaml"
)

// FS holds the documents (YAML, SSM schema 2.2, aws:runShellScript).
//
//go:embed stop_intake.yaml status.yaml unregister.yaml
var FS embed.FS
