package cwmetrics_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"

	"github.com/runnerfleet/runnerfleet/handlers/drain"
	"github.com/runnerfleet/runnerfleet/handlers/scale"
	"github.com/runnerfleet/runnerfleet/infra/aws/cwmetrics"
	"github.com/runnerfleet/runnerfleet/integration/emulator"
)

// Publish against the emulator, read back with the same (awsQuery) client.
func TestPublishAgainstEmulator(t *testing.T) {
	e := emulator.Start(t, emulator.Options{})
	ctx := context.Background()
	client := cwmetrics.NewClient(e.AWSConfig(t))
	ns := emulator.UniqueName(t, "runnerfleet-ns")
	sink, err := cwmetrics.New(client, ns)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Now().UTC().Truncate(time.Second)
	fleetA := emulator.UniqueName(t, "fleet-a")
	if err := sink.Publish(ctx, scale.FleetMetrics{Fleet: fleetA, At: at, ActiveJobs: 7, Capacity: 12,
		DesiredCapacity: 3, InServiceInstances: 3, UnknownInstances: 1, QueuedJobs: -1}); err != nil {
		t.Fatalf("publishing: %v", err)
	}

	out, err := client.ListMetrics(ctx, &cloudwatch.ListMetricsInput{Namespace: aws.String(ns)})
	if err != nil {
		t.Fatalf("listing metrics: %v", err)
	}
	var names []string
	for _, m := range out.Metrics {
		names = append(names, aws.ToString(m.MetricName))
		if len(m.Dimensions) != 1 || aws.ToString(m.Dimensions[0].Name) != "Fleet" || aws.ToString(m.Dimensions[0].Value) != fleetA {
			t.Errorf("%s has dimensions %+v, want Fleet=%s", aws.ToString(m.MetricName), m.Dimensions, fleetA)
		}
	}
	slices.Sort(names)
	want := []string{"ActiveJobs", "Capacity", "DesiredCapacity", "InServiceInstances", "UnknownInstances"}
	if !slices.Equal(names, want) {
		t.Errorf("metrics %v, want %v (QueuedJobs left out when unknown)", names, want)
	}

	stats, err := client.GetMetricStatistics(ctx, &cloudwatch.GetMetricStatisticsInput{
		Namespace:  aws.String(ns),
		MetricName: aws.String("ActiveJobs"),
		Dimensions: []types.Dimension{{Name: aws.String("Fleet"), Value: aws.String(fleetA)}},
		StartTime:  aws.Time(at.Add(-time.Minute)),
		EndTime:    aws.Time(at.Add(time.Minute)),
		Period:     aws.Int32(60),
		Statistics: []types.Statistic{types.StatisticMaximum},
	})
	if err != nil {
		t.Fatalf("reading statistics: %v", err)
	}
	if len(stats.Datapoints) == 0 || aws.ToFloat64(stats.Datapoints[0].Maximum) != 7 {
		t.Errorf("ActiveJobs datapoints %+v, want a maximum of 7", stats.Datapoints)
	}

	if _, err := cwmetrics.New(nil, ""); err == nil {
		t.Error("nil client accepted")
	}
}

// PublishDrains against the emulator: every drain metric under Fleet, the per-replica counts
// summed from the outcomes, read back with the same client.
func TestPublishDrainsAgainstEmulator(t *testing.T) {
	e := emulator.Start(t, emulator.Options{})
	ctx := context.Background()
	client := cwmetrics.NewClient(e.AWSConfig(t))
	ns := emulator.UniqueName(t, "runnerfleet-ns")
	sink, err := cwmetrics.New(client, ns)
	if err != nil {
		t.Fatal(err)
	}
	var _ drain.MetricsSink = sink
	at := time.Now().UTC().Truncate(time.Second)
	fleetA := emulator.UniqueName(t, "fleet-a")
	if err := sink.PublishDrains(ctx, drain.Figures{Fleet: fleetA, At: at, InProgress: 4, OldestAge: 90 * time.Second,
		LeastTimeLeft: 2 * time.Hour, Finished: map[string]int{drain.OutcomeCompleted: 5, drain.OutcomeMaxDrain: 2}, Heartbeats: 11}); err != nil {
		t.Fatalf("publishing: %v", err)
	}
	out, err := client.ListMetrics(ctx, &cloudwatch.ListMetricsInput{Namespace: aws.String(ns)})
	if err != nil {
		t.Fatalf("listing metrics: %v", err)
	}
	var names []string
	for _, m := range out.Metrics {
		names = append(names, aws.ToString(m.MetricName))
		if len(m.Dimensions) != 1 || aws.ToString(m.Dimensions[0].Name) != "Fleet" || aws.ToString(m.Dimensions[0].Value) != fleetA {
			t.Errorf("%s has dimensions %+v, want Fleet=%s", aws.ToString(m.MetricName), m.Dimensions, fleetA)
		}
	}
	slices.Sort(names)
	want := []string{cwmetrics.MetricDrainErrors, cwmetrics.MetricDrainHeartbeats, cwmetrics.MetricDrainsFinished,
		cwmetrics.MetricDrainsInProgress, cwmetrics.MetricOldestDrainAge, cwmetrics.MetricDrainTimeLeft}
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Errorf("metrics %v, want %v", names, want)
	}
	for name, v := range map[string]float64{
		cwmetrics.MetricDrainsInProgress: 4, cwmetrics.MetricOldestDrainAge: 90, cwmetrics.MetricDrainsFinished: 7,
		cwmetrics.MetricDrainErrors: 2, cwmetrics.MetricDrainHeartbeats: 11, cwmetrics.MetricDrainTimeLeft: 7200,
	} {
		stats, err := client.GetMetricStatistics(ctx, &cloudwatch.GetMetricStatisticsInput{
			Namespace: aws.String(ns), MetricName: aws.String(name),
			Dimensions: []types.Dimension{{Name: aws.String("Fleet"), Value: aws.String(fleetA)}},
			StartTime:  aws.Time(at.Add(-time.Minute)), EndTime: aws.Time(at.Add(time.Minute)),
			Period: aws.Int32(60), Statistics: []types.Statistic{types.StatisticSum},
		})
		if err != nil {
			t.Fatalf("reading statistics of %s: %v", name, err)
		}
		if len(stats.Datapoints) != 1 || aws.ToFloat64(stats.Datapoints[0].Sum) != v {
			t.Errorf("%s datapoints %+v, want one with sum %g", name, stats.Datapoints, v)
		}
	}
}

// With no drain in progress there is no deadline: DrainTimeLeft is left out (the alarm on it
// treats missing data as fine), not published as 0, which would read as a deadline now.
func TestNoDrainTimeLeftWithoutDrains(t *testing.T) {
	ctx := context.Background()
	e := emulator.Start(t, emulator.Options{})
	client := cwmetrics.NewClient(e.AWSConfig(t))
	ns := emulator.UniqueName(t, "runnerfleet-ns")
	sink, err := cwmetrics.New(client, ns)
	if err != nil {
		t.Fatal(err)
	}
	if err := sink.PublishDrains(ctx, drain.Figures{Fleet: "idle", At: time.Now().UTC(), LeastTimeLeft: 0}); err != nil {
		t.Fatal(err)
	}
	out, err := client.ListMetrics(ctx, &cloudwatch.ListMetricsInput{Namespace: aws.String(ns), MetricName: aws.String(cwmetrics.MetricDrainTimeLeft)})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Metrics) != 0 {
		t.Fatalf("DrainTimeLeft published with no drain in progress: %+v", out.Metrics)
	}
}

// A fleet the worker runs without is one datum of 1, dimension Fleet, as the alarm reads it.
func TestPublishFleetNotReadyAgainstEmulator(t *testing.T) {
	e := emulator.Start(t, emulator.Options{})
	ctx := context.Background()
	client := cwmetrics.NewClient(e.AWSConfig(t))
	ns := emulator.UniqueName(t, "runnerfleet-ns")
	sink, err := cwmetrics.New(client, ns)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Now().UTC().Truncate(time.Second)
	fleet := emulator.UniqueName(t, "ghost")
	if err := sink.PublishFleetNotReady(ctx, fleet, at); err != nil {
		t.Fatalf("publishing: %v", err)
	}
	stats, err := client.GetMetricStatistics(ctx, &cloudwatch.GetMetricStatisticsInput{
		Namespace: aws.String(ns), MetricName: aws.String(cwmetrics.MetricFleetNotReady),
		Dimensions: []types.Dimension{{Name: aws.String("Fleet"), Value: aws.String(fleet)}},
		StartTime:  aws.Time(at.Add(-time.Minute)), EndTime: aws.Time(at.Add(time.Minute)),
		Period: aws.Int32(60), Statistics: []types.Statistic{types.StatisticMaximum},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(stats.Datapoints) != 1 || aws.ToFloat64(stats.Datapoints[0].Maximum) != 1 {
		t.Errorf("%s datapoints %+v, want one with maximum 1", cwmetrics.MetricFleetNotReady, stats.Datapoints)
	}
}
