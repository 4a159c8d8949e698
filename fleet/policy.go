package fleet

// Policy holds the scaling policy knobs of a fleet. (Filled in by the scaling issue.)
type Policy struct {
	// MinInstances is the floor of the group's desired capacity (at least 1).
	MinInstances int `mapstructure:"min" yaml:"min" json:"min"`
	// MaxInstances is the ceiling of the group's desired capacity.
	MaxInstances int `mapstructure:"max" yaml:"max" json:"max"`
}
