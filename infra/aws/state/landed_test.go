package state

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// retriedAPI stores every PutItem and then, when echo is set, answers it as the SDK's retry of a
// write that had landed answers: ConditionalCheckFailed.
type retriedAPI struct {
	API
	item map[string]types.AttributeValue
	echo bool
}

func (a *retriedAPI) PutItem(_ context.Context, in *dynamodb.PutItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error) {
	if a.echo {
		a.item = in.Item
	}
	return nil, &types.ConditionalCheckFailedException{Message: aws.String("The conditional request failed")}
}

func (a *retriedAPI) GetItem(_ context.Context, _ *dynamodb.GetItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error) {
	return &dynamodb.GetItemOutput{Item: a.item}, nil
}

// A write whose first attempt landed and whose retry failed the condition is this writer's: Save
// says true. A condition lost to another writer (whose write_id is stored) stays false.
func TestSaveKnowsItsOwnRetriedWrite(t *testing.T) {
	api := &retriedAPI{echo: true}
	tbl, err := New(api, "t")
	if err != nil {
		t.Fatal(err)
	}
	ok, err := tbl.Save(context.Background(), "drain#tok", "drain", []byte(`{}`), 0, time.Time{}, time.Time{})
	if err != nil || !ok {
		t.Fatalf("retried write that landed: Save = %v, %v; want true", ok, err)
	}
	api.echo = false // the stored item is now another writer's (the write above, another write_id)
	ok, err = tbl.Save(context.Background(), "drain#tok", "drain", []byte(`{}`), 0, time.Time{}, time.Time{})
	if err != nil || ok {
		t.Fatalf("write lost to another writer: Save = %v, %v; want false", ok, err)
	}
}

// throttledAPI fails every read and write, as DynamoDB does when it throttles.
type throttledAPI struct{ API }

func (throttledAPI) GetItem(context.Context, *dynamodb.GetItemInput, ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error) {
	return nil, &types.ProvisionedThroughputExceededException{Message: aws.String("slow down")}
}

func (throttledAPI) PutItem(context.Context, *dynamodb.PutItemInput, ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error) {
	return nil, &types.ProvisionedThroughputExceededException{Message: aws.String("slow down")}
}

// The errors of a record keyed by a lifecycle action token (a drain's, a launch gate's) carry
// its hash, never the token: the router logs every transient error's text.
func TestErrorsNeverQuoteAnActionToken(t *testing.T) {
	tbl, err := New(throttledAPI{}, "t")
	if err != nil {
		t.Fatal(err)
	}
	const token = "b4e5a1c2-SECRET-TOKEN"
	ctx := context.Background()
	for _, pk := range []string{"drain#" + token, "launch#" + token} {
		_, _, _, lerr := tbl.Load(ctx, pk, "x")
		_, serr := tbl.Save(ctx, pk, "x", []byte(`{}`), 0, time.Time{}, time.Time{})
		for _, err := range []error{lerr, serr} {
			if err == nil || strings.Contains(err.Error(), "SECRET") || !strings.Contains(err.Error(), "sha256:") {
				t.Errorf("%s: error %v; want the key's hash, not the token", pk, err)
			}
		}
	}
	if _, _, _, err := tbl.Load(ctx, "instance#i-0abc", "mark"); err == nil || !strings.Contains(err.Error(), "instance#i-0abc") {
		t.Errorf("other keys are shown as they are: %v", err)
	}
}
