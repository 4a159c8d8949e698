package state

import (
	"context"
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
