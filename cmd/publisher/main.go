// Command publisher is RunnerFleet's operator CLI: it builds and validates a command for one
// fleet and publishes it to the worker's FIFO control queue (message group = fleet), or simulates
// a scaling policy offline. See README.md.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	root := newRootCmd()
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "publisher:", err)
		os.Exit(exitStatus(err))
	}
}

// newRootCmd assembles every subcommand. Commands register here, in one place:
//   - fleet commands (commands.go): tick works; scale, drain, cycle, update and status refuse
//     with the issue that brings them until it lands;
//   - simulate (simulate*.go, its own files): newSimulateCmd.
func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "publisher",
		Short: "Send commands to RunnerFleet's worker, or simulate a scaling policy",
		Long: `publisher builds and validates a command for one fleet and publishes it to the worker's
FIFO control queue (message group = the fleet, so commands of one fleet are handled in order),
then prints the command's id. --dry-run prints the message instead of sending it.

The control queue and the fleets come from the worker's configuration (--config FILE,
$RUNNERFLEET_CONFIG, or the SSM parameter named by $RUNNERFLEET_CONFIG_PARAMETER), or the queue
from --queue.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	for _, c := range fleetCommands() {
		root.AddCommand(c)
	}
	root.AddCommand(newSimulateCmd())
	return root
}
