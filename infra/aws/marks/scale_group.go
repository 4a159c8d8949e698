package marks

import (
	"context"
	"fmt"

	"github.com/runnerfleet/runnerfleet/handlers/interrupt"
	"github.com/runnerfleet/runnerfleet/handlers/scale"
)

// Lister lists a group's unfinished marks (Store implements it).
type Lister interface {
	List(ctx context.Context, group string) ([]interrupt.Mark, error)
}

// Group decorates a scale.Group: Describe merges each member's mark into its fleet.Instance —
// SpotInterrupted, RebalanceRecommended, and IntakeStopped when the stop-intake document was
// sent — so the policy counts a marked instance as offering no capacity and prefers it for
// removal. Every other call goes to the wrapped Group.
type Group struct {
	scale.Group
	Marks Lister
}

var _ scale.Group = Group{}

// Describe describes the group, then merges the marks (one query of the state table). A failed
// read of the marks fails the describe: a tick must not take a reclaimed instance for capacity.
func (g Group) Describe(ctx context.Context, groupName string) (scale.GroupState, error) {
	st, err := g.Group.Describe(ctx, groupName)
	if err != nil {
		return st, err
	}
	marks, err := g.Marks.List(ctx, groupName)
	if err != nil {
		return scale.GroupState{}, fmt.Errorf("reading instance marks of %s: %w", groupName, err)
	}
	byID := make(map[string]interrupt.Mark, len(marks))
	for _, m := range marks {
		byID[m.InstanceID] = m
	}
	for i := range st.Members {
		m, ok := byID[st.Members[i].Instance.ID]
		if !ok {
			continue
		}
		inst := &st.Members[i].Instance
		inst.SpotInterrupted = inst.SpotInterrupted || m.SpotInterrupted
		inst.RebalanceRecommended = inst.RebalanceRecommended || m.RebalanceRecommended
		inst.IntakeStopped = inst.IntakeStopped || m.IntakeStopped
	}
	return st, nil
}
