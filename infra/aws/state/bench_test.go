package state_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/runnerfleet/runnerfleet/infra/aws/state"
)

// BenchmarkUnfinished lists the 10 drains in flight of a table that also holds 2,000 finished
// records kept until their TTL (a week of a busy fleet's drains, marks and commands), through
// the index (Unfinished), against the baseline it replaced: a strongly consistent Scan of the
// whole table filtered on attribute_not_exists(expires_at), measured in the same run.
func BenchmarkUnfinished(b *testing.B) {
	ctx := context.Background()
	tbl, client, name := newTableB(b)
	const finished, open = 2000, 10
	body := []byte(`{"token":"` + string(make([]byte, 200)) + `"}`)
	for i := range finished {
		pk := fmt.Sprintf("drain#done-%04d", i)
		if _, err := tbl.Save(ctx, pk, "drain", body, 0, time.Time{}, time.Now().Add(24*time.Hour)); err != nil {
			b.Fatal(err)
		}
	}
	for i := range open {
		if _, err := tbl.Save(ctx, fmt.Sprintf("drain#open-%02d", i), "drain", body, 0, time.Now(), time.Time{}); err != nil {
			b.Fatal(err)
		}
	}
	scan := func() int {
		in := &dynamodb.ScanInput{
			TableName:                aws.String(name),
			FilterExpression:         aws.String("begins_with(#pk, :p) AND attribute_not_exists(#e)"),
			ExpressionAttributeNames: map[string]string{"#pk": state.AttrPK, "#e": state.AttrExpiresAt},
			ExpressionAttributeValues: map[string]types.AttributeValue{
				":p": &types.AttributeValueMemberS{Value: "drain#"},
			},
			ConsistentRead: aws.Bool(true),
		}
		n := 0
		for {
			out, err := client.Scan(ctx, in)
			if err != nil {
				b.Fatal(err)
			}
			n += len(out.Items)
			if len(out.LastEvaluatedKey) == 0 {
				return n
			}
			in.ExclusiveStartKey = out.LastEvaluatedKey
		}
	}
	var scanNS, indexNS time.Duration
	for b.Loop() {
		began := time.Now()
		if n := scan(); n != open {
			b.Fatalf("scan found %d, want %d", n, open)
		}
		scanNS += time.Since(began)
		began = time.Now()
		bodies, err := tbl.Unfinished(ctx, "drain#")
		if err != nil || len(bodies) != open {
			b.Fatalf("Unfinished = %d, %v; want %d", len(bodies), err, open)
		}
		indexNS += time.Since(began)
	}
	b.ReportMetric(float64(scanNS.Milliseconds())/float64(b.N), "scan-ms/op")
	b.ReportMetric(float64(indexNS.Microseconds())/1000/float64(b.N), "index-ms/op")
	b.ReportMetric(float64(scanNS)/float64(indexNS), "scan/index")
}
