package update

import (
	"context"
	"errors"
	"time"
)

// ErrNoChanges is wrapped by Stacks.CreateChangeSet's error when the service refuses the change
// set because it would change nothing (the emulator throws "No updates are to be performed";
// AWS instead creates a FAILED change set, which DescribeChangeSet shows).
var ErrNoChanges = errors.New("the change set contains no changes")

// ErrChangeSetExists is wrapped by Stacks.CreateChangeSet's error when a change set of that name
// exists already (a redelivered command created it before): the handler describes it instead.
var ErrChangeSetExists = errors.New("change set exists already")

// ErrChangeSetNotFound is wrapped by Stacks.DescribeChangeSet's error when the change set does
// not exist (deleted by someone, or with its stack): the update fails rather than retrying
// forever.
var ErrChangeSetNotFound = errors.New("change set not found")

// ErrRefused is wrapped by Stacks.CreateChangeSet's or Stacks.ExecuteChangeSet's error when the
// service refuses the change set for good (a template or parameter error, access denied): the
// update fails with the service's message.
var ErrRefused = errors.New("the service refused the change set")

// Stacks is CloudFormation as the handler uses it. infra/aws/stacks implements it.
type Stacks interface {
	// Describe returns the stack; found is false when it does not exist (or was deleted).
	Describe(ctx context.Context, name string) (s Stack, found bool, err error)
	// CreateChangeSet creates a change set and returns its id (ARN).
	CreateChangeSet(ctx context.Context, in ChangeSetInput) (id string, err error)
	// DescribeChangeSet returns a change set with all its changes (every page).
	DescribeChangeSet(ctx context.Context, stack, changeSet string) (ChangeSet, error)
	// ExecuteChangeSet starts executing a change set.
	ExecuteChangeSet(ctx context.Context, stack, changeSet string) error
	// Events returns the stack's events at or after since, oldest first.
	Events(ctx context.Context, stack string, since time.Time) ([]Event, error)
}

// Store keeps one record per (pk, sk) with optimistic concurrency. *infra/aws/state.Table
// implements it over the DynamoDB state table.
type Store interface {
	// Load returns the record's body and version; found is false when there is none.
	Load(ctx context.Context, pk, sk string) (body []byte, version int64, found bool, err error)
	// Save writes body if the stored version is still version (0: create only). It returns false
	// when another writer got there first. A non-zero expires marks the record finished (its TTL).
	Save(ctx context.Context, pk, sk string, body []byte, version int64, due, expires time.Time) (bool, error)
}

// Stack is what Describe returns.
type Stack struct {
	ID, Name     string
	Status       string
	StatusReason string
	// Parameters are the stack's current parameter keys and values.
	Parameters map[string]string
}

// ChangeSetInput is one change set to create.
type ChangeSetInput struct {
	Stack string
	// Name is the change set's name (unique per command).
	Name string
	// Type is "CREATE" (the stack does not exist) or "UPDATE".
	Type         string
	TemplateBody string
	// Parameters are the values to set; Previous lists the parameters that keep their previous
	// values (UsePreviousValue).
	Parameters map[string]string
	Previous   []string
	// RoleARN is the CloudFormation service role; empty means the caller's credentials.
	RoleARN string
	// Description says which command made it.
	Description string
}

// ChangeSet is what DescribeChangeSet returns.
type ChangeSet struct {
	ID, Name string
	// Status is CREATE_PENDING, CREATE_IN_PROGRESS, CREATE_COMPLETE, DELETE_* or FAILED.
	Status string
	// ExecutionStatus is UNAVAILABLE, AVAILABLE, EXECUTE_IN_PROGRESS, EXECUTE_COMPLETE, …
	ExecutionStatus string
	StatusReason    string
	Changes         []Change
}

// Change is one resource change of a change set.
type Change struct {
	// Action is Add, Modify, Remove, Import or Dynamic.
	Action       string `json:"action"`
	LogicalID    string `json:"logical_id"`
	PhysicalID   string `json:"physical_id,omitempty"`
	ResourceType string `json:"resource_type"`
	// Replacement is True, False or Conditional for a Modify ("" otherwise).
	Replacement string `json:"replacement,omitempty"`
}

// Event is one stack event.
type Event struct {
	ID           string    `json:"id"`
	Time         time.Time `json:"time"`
	LogicalID    string    `json:"logical_id"`
	ResourceType string    `json:"resource_type"`
	Status       string    `json:"status"`
	Reason       string    `json:"reason,omitempty"`
}
