package stacks

import (
	"fmt"
	"log/slog"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	"github.com/prometheus/client_golang/prometheus"

	runner "github.com/runnerfleet/runnerfleet/deploy/runner"
	"github.com/runnerfleet/runnerfleet/fleet"
	"github.com/runnerfleet/runnerfleet/handlers/update"
	"github.com/runnerfleet/runnerfleet/infra/properties"
)

// NewUpdater builds the worker's update handler (handlers/update) in one call: this adapter over
// a CloudFormation client of awsCfg, the runner template the worker was built with
// (deploy/runner), the fleets' stacks, the CloudFormation service role passed on every change set
// (roleARN; empty: the worker's own credentials) and the state table (store, e.g. a
// *infra/aws/state.Table).
//
// The worker wires it as:
//
//	updater, err := stacks.NewUpdater(awsCfg, cfg.Fleets, roleARN, table, reg, logger)
//	commands:   messages.CommandUpdate: updater.HandleCommand
//	registry:   messages.KindStackStatus: updater.HandleStackStatus
//	each tick:  updater.Advance(ctx, fleet) before the scaling decision
func NewUpdater(awsCfg aws.Config, fleets []fleet.Settings, roleARN string, store update.Store, reg prometheus.Registerer, logger *slog.Logger) (*update.Handler, error) {
	cf, err := New(cloudformation.NewFromConfig(awsCfg))
	if err != nil {
		return nil, err
	}
	fs := make([]update.Fleet, 0, len(fleets))
	for _, f := range fleets {
		fs = append(fs, update.Fleet{Name: f.Name, Stack: f.StackName, RoleARN: roleARN, AllowTemplateBody: f.AllowCustomTemplate})
	}
	h, err := update.New(update.Config{Template: runner.Template, TemplateParameters: properties.ParameterNames, Fleets: fs}, cf, store, reg, logger)
	if err != nil {
		return nil, fmt.Errorf("building the update handler: %w", err)
	}
	return h, nil
}
