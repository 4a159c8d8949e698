// Package stacks is the CloudFormation adapter of fleet updates: it implements
// handlers/update.Stacks (describe a stack, create / describe / execute a change set, read stack
// events) over the SDK's CloudFormation client, and the publisher uses it to follow an update.
//
// CloudFormation's answers are mapped here and nowhere else: a stack that does not exist
// (ValidationError "… does not exist") is found=false; a change set that changes nothing thrown
// at creation ("No updates are to be performed", the emulator) is update.ErrNoChanges (AWS creates
// a FAILED change set instead, which the handler recognises); an existing change set name is
// update.ErrChangeSetExists; any other permanent error of CreateChangeSet or ExecuteChangeSet is
// update.ErrRefused. A change set that is not found, or whose stack does not exist (the
// ValidationError of a DescribeChangeSet naming a deleted stack), is update.ErrChangeSetNotFound.
package stacks

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation/types"
	smithy "github.com/aws/smithy-go"

	"github.com/runnerfleet/runnerfleet/handlers/update"
	rfaws "github.com/runnerfleet/runnerfleet/infra/aws"
)

// maxEventPages bounds how far back Events reads (100 events a page): a stack's history can be
// long, and only the events since an update started matter.
const maxEventPages = 20

// API is the part of the CloudFormation client the adapter calls, with the SDK's signatures.
type API interface {
	DescribeStacks(ctx context.Context, in *cloudformation.DescribeStacksInput, optFns ...func(*cloudformation.Options)) (*cloudformation.DescribeStacksOutput, error)
	CreateChangeSet(ctx context.Context, in *cloudformation.CreateChangeSetInput, optFns ...func(*cloudformation.Options)) (*cloudformation.CreateChangeSetOutput, error)
	DescribeChangeSet(ctx context.Context, in *cloudformation.DescribeChangeSetInput, optFns ...func(*cloudformation.Options)) (*cloudformation.DescribeChangeSetOutput, error)
	ExecuteChangeSet(ctx context.Context, in *cloudformation.ExecuteChangeSetInput, optFns ...func(*cloudformation.Options)) (*cloudformation.ExecuteChangeSetOutput, error)
	DescribeStackEvents(ctx context.Context, in *cloudformation.DescribeStackEventsInput, optFns ...func(*cloudformation.Options)) (*cloudformation.DescribeStackEventsOutput, error)
}

// Stacks implements update.Stacks. It is safe for concurrent use.
type Stacks struct {
	api API
}

var _ update.Stacks = (*Stacks)(nil)

// New returns the adapter; it refuses a nil client.
func New(api API) (*Stacks, error) {
	if api == nil {
		return nil, errors.New("stacks: nil cloudformation client")
	}
	return &Stacks{api: api}, nil
}

// Describe returns the stack; found is false when it does not exist.
func (s *Stacks) Describe(ctx context.Context, name string) (update.Stack, bool, error) {
	out, err := s.api.DescribeStacks(ctx, &cloudformation.DescribeStacksInput{StackName: aws.String(name)})
	if err != nil {
		if stackMissing(err) {
			return update.Stack{}, false, nil
		}
		return update.Stack{}, false, fmt.Errorf("describing stack %s: %w", name, err)
	}
	if len(out.Stacks) == 0 {
		return update.Stack{}, false, nil
	}
	st := out.Stacks[0]
	if st.StackStatus == types.StackStatusDeleteComplete {
		return update.Stack{}, false, nil
	}
	res := update.Stack{ID: aws.ToString(st.StackId), Name: aws.ToString(st.StackName), Status: string(st.StackStatus),
		StatusReason: aws.ToString(st.StackStatusReason), Parameters: map[string]string{}}
	for _, p := range st.Parameters {
		res.Parameters[aws.ToString(p.ParameterKey)] = aws.ToString(p.ParameterValue)
	}
	return res, true, nil
}

// capabilities are acknowledged for every change set: the runner template creates an IAM role
// and instance profile (named ones in custom templates too).
var capabilities = []types.Capability{types.CapabilityCapabilityIam, types.CapabilityCapabilityNamedIam}

// CreateChangeSet creates a change set with in.Parameters set and in.Previous kept
// (UsePreviousValue), with the service role when in.RoleARN is set.
func (s *Stacks) CreateChangeSet(ctx context.Context, in update.ChangeSetInput) (string, error) {
	keys := make([]string, 0, len(in.Parameters))
	for k := range in.Parameters {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	params := make([]types.Parameter, 0, len(keys)+len(in.Previous))
	for _, k := range keys {
		params = append(params, types.Parameter{ParameterKey: aws.String(k), ParameterValue: aws.String(in.Parameters[k])})
	}
	for _, k := range in.Previous {
		params = append(params, types.Parameter{ParameterKey: aws.String(k), UsePreviousValue: aws.Bool(true)})
	}
	input := &cloudformation.CreateChangeSetInput{
		StackName:     aws.String(in.Stack),
		ChangeSetName: aws.String(in.Name),
		ChangeSetType: types.ChangeSetType(in.Type),
		TemplateBody:  aws.String(in.TemplateBody),
		Parameters:    params,
		Capabilities:  capabilities,
		Description:   aws.String(in.Description),
	}
	if in.RoleARN != "" {
		input.RoleARN = aws.String(in.RoleARN)
	}
	out, err := s.api.CreateChangeSet(ctx, input)
	if err != nil {
		var apiErr smithy.APIError
		switch {
		case errors.As(err, &apiErr) && update.NoChangesReason(apiErr.ErrorMessage()):
			return "", fmt.Errorf("creating change set %s of stack %s: %w", in.Name, in.Stack, update.ErrNoChanges)
		case errors.As(err, &apiErr) && apiErr.ErrorCode() == "AlreadyExistsException":
			return "", fmt.Errorf("creating change set %s of stack %s: %w", in.Name, in.Stack, update.ErrChangeSetExists)
		case errors.As(err, &apiErr) && rfaws.Classify(err) == rfaws.ClassPermanent:
			return "", fmt.Errorf("%w: %s: %s", update.ErrRefused, apiErr.ErrorCode(), apiErr.ErrorMessage())
		}
		return "", fmt.Errorf("creating change set %s of stack %s: %w", in.Name, in.Stack, err)
	}
	return aws.ToString(out.Id), nil
}

// DescribeChangeSet returns the change set with every page of its changes. A change set that does
// not exist, or whose stack does not exist (deleted mid-update: CloudFormation answers
// ValidationError "Stack [x] does not exist"), is update.ErrChangeSetNotFound.
func (s *Stacks) DescribeChangeSet(ctx context.Context, stack, changeSet string) (update.ChangeSet, error) {
	in := &cloudformation.DescribeChangeSetInput{StackName: aws.String(stack), ChangeSetName: aws.String(changeSet)}
	var cs update.ChangeSet
	for page := 0; ; page++ {
		out, err := s.api.DescribeChangeSet(ctx, in)
		if err != nil {
			if stackMissing(err) {
				return update.ChangeSet{}, fmt.Errorf("describing change set %s of stack %s: %w: %w", changeSet, stack, update.ErrChangeSetNotFound, err)
			}
			return update.ChangeSet{}, fmt.Errorf("describing change set %s of stack %s: %w", changeSet, stack, err)
		}
		if page == 0 {
			cs = update.ChangeSet{ID: aws.ToString(out.ChangeSetId), Name: aws.ToString(out.ChangeSetName), Status: string(out.Status),
				ExecutionStatus: string(out.ExecutionStatus), StatusReason: aws.ToString(out.StatusReason)}
		}
		for _, c := range out.Changes {
			rc := c.ResourceChange
			if rc == nil {
				continue
			}
			cs.Changes = append(cs.Changes, update.Change{Action: string(rc.Action), LogicalID: aws.ToString(rc.LogicalResourceId),
				PhysicalID: aws.ToString(rc.PhysicalResourceId), ResourceType: aws.ToString(rc.ResourceType), Replacement: string(rc.Replacement)})
		}
		if aws.ToString(out.NextToken) == "" || page > 100 {
			return cs, nil
		}
		in.NextToken = out.NextToken
	}
}

// ExecuteChangeSet starts executing the change set. A permanent refusal (access denied, a
// validation error, a change set not in an executable status) is update.ErrRefused with the
// service's code and message; the handler tells a change set executed already from one that
// cannot be.
func (s *Stacks) ExecuteChangeSet(ctx context.Context, stack, changeSet string) error {
	_, err := s.api.ExecuteChangeSet(ctx, &cloudformation.ExecuteChangeSetInput{StackName: aws.String(stack), ChangeSetName: aws.String(changeSet)})
	if err != nil {
		var apiErr smithy.APIError
		if errors.As(err, &apiErr) && rfaws.Classify(err) == rfaws.ClassPermanent {
			return fmt.Errorf("%w: %s: %s", update.ErrRefused, apiErr.ErrorCode(), apiErr.ErrorMessage())
		}
		return fmt.Errorf("executing change set %s of stack %s: %w", changeSet, stack, err)
	}
	return nil
}

// Events returns the stack's events at or after since, oldest first (at most maxEventPages
// pages back).
func (s *Stacks) Events(ctx context.Context, stack string, since time.Time) ([]update.Event, error) {
	in := &cloudformation.DescribeStackEventsInput{StackName: aws.String(stack)}
	var events []update.Event
	for page := 0; page < maxEventPages; page++ {
		out, err := s.api.DescribeStackEvents(ctx, in)
		if err != nil {
			if rfaws.Classify(err) == rfaws.ClassPermanent {
				// Access denied, say: reading again cannot help.
				return nil, fmt.Errorf("reading events of stack %s: %w: %w", stack, update.ErrRefused, err)
			}
			return nil, fmt.Errorf("reading events of stack %s: %w", stack, err)
		}
		older := false
		for _, e := range out.StackEvents {
			t := aws.ToTime(e.Timestamp)
			if t.Before(since) {
				older = true
				continue
			}
			events = append(events, update.Event{ID: aws.ToString(e.EventId), Time: t, LogicalID: aws.ToString(e.LogicalResourceId),
				ResourceType: aws.ToString(e.ResourceType), Status: string(e.ResourceStatus), Reason: aws.ToString(e.ResourceStatusReason)})
		}
		if older || aws.ToString(out.NextToken) == "" {
			break
		}
		in.NextToken = out.NextToken
	}
	// CloudFormation lists newest first; ties keep the reverse of its order.
	for i, j := 0, len(events)-1; i < j; i, j = i+1, j-1 {
		events[i], events[j] = events[j], events[i]
	}
	sort.SliceStable(events, func(i, j int) bool { return events[i].Time.Before(events[j].Time) })
	return events, nil
}

// stackMissing reports whether err says the stack does not exist: CloudFormation answers
// ValidationError "Stack with id X does not exist".
func stackMissing(err error) bool {
	if rfaws.IsNotFound(err) {
		return true
	}
	var apiErr smithy.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode() == "ValidationError" && strings.Contains(apiErr.ErrorMessage(), "does not exist")
}
