// Package state is RunnerFleet's DynamoDB state table adapter: versioned records under a
// partition key pk (S) and sort key sk (S), written only with conditional writes.
//
// Item layout (one item per record):
//
//	pk         S  what the record is about, e.g. "drain#<LifecycleActionToken>", "fleet#<name>"
//	sk         S  which record of it, e.g. "drain", "scale"
//	version    N  1 on creation, +1 on every write; every write is conditioned on it
//	body       S  the record itself, JSON owned by the handler that writes it
//	due_at     N  unix seconds when the record's next step is due (absent: nothing due)
//	expires_at N  unix seconds; set on finished records only; the table's TTL attribute
//	open       S  the pk's kind ("drain#", "instance#": the pk up to and including its
//	              first '#'), on unfinished records only; the key of the sparse index "open"
//	write_id   S  random, one per Save: tells a write that landed from one that lost (see Save)
//
// A record without expires_at is unfinished. Unfinished lists those of one kind by querying the
// sparse global secondary index "open" (hash open, range pk, all attributes projected): it
// holds only unfinished records, so the hot paths that list them (every tick reads the fleet's
// marks, every sweep its drains, every state change of a fleet's instance the drains in
// progress) read what is in flight, not every finished record kept until its TTL. An index is
// eventually consistent: a record written a moment ago may be missing from one listing (the
// next tick or sweep sees it); a step always re-reads its record with Load before it acts.
//
// Records written before the index existed carry no open attribute; Backfill gives it to them
// (the worker runs it at start-up).
package state

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	rfaws "github.com/runnerfleet/runnerfleet/infra/aws"
	"github.com/runnerfleet/runnerfleet/messages"
)

// Attribute names of the table; see the package doc.
const (
	AttrPK        = "pk"
	AttrSK        = "sk"
	AttrVersion   = "version"
	AttrBody      = "body"
	AttrDueAt     = "due_at"
	AttrExpiresAt = "expires_at"
	AttrOpen      = "open"
	AttrWriteID   = "write_id"
)

// IndexOpen is the sparse global secondary index of unfinished records (see the package doc).
const IndexOpen = "open"

// API is the part of the DynamoDB client that Table calls, with the SDK's signatures.
type API interface {
	GetItem(ctx context.Context, in *dynamodb.GetItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	PutItem(ctx context.Context, in *dynamodb.PutItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
	Query(ctx context.Context, in *dynamodb.QueryInput, optFns ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error)
	Scan(ctx context.Context, in *dynamodb.ScanInput, optFns ...func(*dynamodb.Options)) (*dynamodb.ScanOutput, error)
}

// Table reads and writes versioned records of one state table. It is safe for concurrent use.
type Table struct {
	api  API
	name string
}

// New returns a Table over the named table. It refuses a nil client or an empty name.
func New(api API, name string) (*Table, error) {
	var errs []error
	if api == nil {
		errs = append(errs, errors.New("state: nil dynamodb client"))
	}
	if name == "" {
		errs = append(errs, errors.New("state: empty table name"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &Table{api: api, name: name}, nil
}

// Name is the table's name.
func (t *Table) Name() string { return t.name }

// Load reads a record with a strongly consistent read. found is false when there is no such
// record (body nil, version 0).
func (t *Table) Load(ctx context.Context, pk, sk string) (body []byte, version int64, found bool, err error) {
	out, err := t.api.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      aws.String(t.name),
		Key:            key(pk, sk),
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return nil, 0, false, fmt.Errorf("reading state %s/%s from %s: %w", keyText(pk), sk, t.name, err)
	}
	if len(out.Item) == 0 {
		return nil, 0, false, nil
	}
	version, body, err = decode(out.Item)
	if err != nil {
		return nil, 0, false, fmt.Errorf("reading state %s/%s from %s: %w", keyText(pk), sk, t.name, err)
	}
	return body, version, true, nil
}

// Save writes body as the record's next version, conditioned on the version the caller read:
// version 0 creates the record only if it does not exist; version n replaces it only if its
// stored version is still n (the new one is n+1). It returns false and no error when the
// condition failed (another writer got there first: re-read and decide again).
//
// due, when not zero, is when the record's next step is due; expires, when not zero, marks the
// record finished and is its TTL.
//
// The SDK retries a PutItem whose response was lost or damaged (a dropped connection, a CRC32
// mismatch), and the retry of a write that already landed fails its own condition. Every write
// carries a fresh write_id, so a failed condition is checked against the stored item: when it
// is this very write (version+1, our write_id), Save returns true. Without that, a drain's claim
// could read as a duplicate and no drain start, or a tick's decision be lost on every replica.
func (t *Table) Save(ctx context.Context, pk, sk string, body []byte, version int64, due, expires time.Time) (bool, error) {
	item := key(pk, sk)
	item[AttrVersion] = &types.AttributeValueMemberN{Value: strconv.FormatInt(version+1, 10)}
	item[AttrBody] = &types.AttributeValueMemberS{Value: string(body)}
	writeID := rand.Text()
	item[AttrWriteID] = &types.AttributeValueMemberS{Value: writeID}
	if !due.IsZero() {
		item[AttrDueAt] = &types.AttributeValueMemberN{Value: strconv.FormatInt(due.Unix(), 10)}
	}
	if !expires.IsZero() {
		item[AttrExpiresAt] = &types.AttributeValueMemberN{Value: strconv.FormatInt(expires.Unix(), 10)}
	} else {
		item[AttrOpen] = &types.AttributeValueMemberS{Value: kindOf(pk)}
	}
	var cond expression.ConditionBuilder
	if version == 0 {
		cond = expression.AttributeNotExists(expression.Name(AttrPK))
	} else {
		cond = expression.Name(AttrVersion).Equal(expression.Value(version))
	}
	expr, err := expression.NewBuilder().WithCondition(cond).Build()
	if err != nil {
		return false, fmt.Errorf("building condition for state %s/%s: %w", keyText(pk), sk, err)
	}
	_, err = t.api.PutItem(ctx, &dynamodb.PutItemInput{
		TableName:                 aws.String(t.name),
		Item:                      item,
		ConditionExpression:       expr.Condition(),
		ExpressionAttributeNames:  expr.Names(),
		ExpressionAttributeValues: expr.Values(),
	})
	if err != nil {
		var ccf *types.ConditionalCheckFailedException
		if errors.As(err, &ccf) || rfaws.IsConflict(err) {
			return t.landed(ctx, pk, sk, version+1, writeID)
		}
		return false, fmt.Errorf("writing state %s/%s version %d to %s: %w", keyText(pk), sk, version+1, t.name, err)
	}
	return true, nil
}

// landed tells whether the stored record is the write of version with writeID: a write whose
// SDK retry failed the condition because its first attempt had landed.
func (t *Table) landed(ctx context.Context, pk, sk string, version int64, writeID string) (bool, error) {
	out, err := t.api.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:                aws.String(t.name),
		Key:                      key(pk, sk),
		ConsistentRead:           aws.Bool(true),
		ProjectionExpression:     aws.String("#v, " + AttrWriteID),
		ExpressionAttributeNames: map[string]string{"#v": AttrVersion},
	})
	if err != nil {
		return false, fmt.Errorf("checking whether state %s/%s version %d landed in %s: %w", keyText(pk), sk, version, t.name, err)
	}
	v, _ := out.Item[AttrVersion].(*types.AttributeValueMemberN)
	id, _ := out.Item[AttrWriteID].(*types.AttributeValueMemberS)
	return v != nil && id != nil && v.Value == strconv.FormatInt(version, 10) && id.Value == writeID, nil
}

// Unfinished returns the bodies of every unfinished record (no expires_at) whose pk starts with
// prefix, in no particular order. prefix must name a kind: it runs up to or past the pk's first
// '#' ("drain#", "instance#i-0"). It queries the index "open" (eventually consistent, see the
// package doc). While the index does not exist or is still being built (a worker stack update
// that adds it: DynamoDB builds it from the table's items for minutes), it scans the table
// instead, as earlier versions did, so no listing fails in the upgrade; IndexReady says which.
func (t *Table) Unfinished(ctx context.Context, prefix string) ([][]byte, error) {
	kind := kindOf(prefix)
	if kind == prefix && !strings.HasSuffix(prefix, "#") {
		return nil, fmt.Errorf("listing unfinished records: prefix %q names no kind (want \"<kind>#...\")", prefix)
	}
	keyCond := expression.Key(AttrOpen).Equal(expression.Value(kind))
	if prefix != kind {
		keyCond = keyCond.And(expression.Key(AttrPK).BeginsWith(prefix))
	}
	expr, err := expression.NewBuilder().WithKeyCondition(keyCond).Build()
	if err != nil {
		return nil, fmt.Errorf("building the query for unfinished %q records: %w", prefix, err)
	}
	var bodies [][]byte
	in := &dynamodb.QueryInput{
		TableName:                 aws.String(t.name),
		IndexName:                 aws.String(IndexOpen),
		KeyConditionExpression:    expr.KeyCondition(),
		ExpressionAttributeNames:  expr.Names(),
		ExpressionAttributeValues: expr.Values(),
	}
	for {
		out, err := t.api.Query(ctx, in)
		if err != nil && indexUnusable(err) {
			return t.scanUnfinished(ctx, prefix)
		}
		if err != nil {
			return nil, fmt.Errorf("listing unfinished %q records of %s (index %q): %w", prefix, t.name, IndexOpen, err)
		}
		if bodies, err = appendBodies(bodies, out.Items); err != nil {
			return nil, fmt.Errorf("listing unfinished %q records of %s: %w", prefix, t.name, err)
		}
		if len(out.LastEvaluatedKey) == 0 {
			return bodies, nil
		}
		in.ExclusiveStartKey = out.LastEvaluatedKey
	}
}

// scanUnfinished is Unfinished without the index: a strongly consistent Scan of the whole table
// filtered on the prefix and on attribute_not_exists(expires_at).
func (t *Table) scanUnfinished(ctx context.Context, prefix string) ([][]byte, error) {
	filter := expression.Name(AttrPK).BeginsWith(prefix).
		And(expression.AttributeNotExists(expression.Name(AttrExpiresAt)))
	expr, err := expression.NewBuilder().WithFilter(filter).Build()
	if err != nil {
		return nil, fmt.Errorf("building filter for unfinished %q records: %w", prefix, err)
	}
	var bodies [][]byte
	in := &dynamodb.ScanInput{
		TableName:                 aws.String(t.name),
		FilterExpression:          expr.Filter(),
		ExpressionAttributeNames:  expr.Names(),
		ExpressionAttributeValues: expr.Values(),
		ConsistentRead:            aws.Bool(true),
	}
	for {
		out, err := t.api.Scan(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("scanning %s for unfinished %q records: %w", t.name, prefix, err)
		}
		if bodies, err = appendBodies(bodies, out.Items); err != nil {
			return nil, fmt.Errorf("scanning %s for unfinished %q records: %w", t.name, prefix, err)
		}
		if len(out.LastEvaluatedKey) == 0 {
			return bodies, nil
		}
		in.ExclusiveStartKey = out.LastEvaluatedKey
	}
}

// IndexReady reports whether Unfinished can query the index "open": nil when it can, else an
// error that says why (missing: the table predates it; being built: a stack update is adding
// it) and that listings scan the table meanwhile.
func (t *Table) IndexReady(ctx context.Context) error {
	_, err := t.api.Query(ctx, &dynamodb.QueryInput{
		TableName:                 aws.String(t.name),
		IndexName:                 aws.String(IndexOpen),
		KeyConditionExpression:    aws.String("#o = :k"),
		ExpressionAttributeNames:  map[string]string{"#o": AttrOpen},
		ExpressionAttributeValues: map[string]types.AttributeValue{":k": &types.AttributeValueMemberS{Value: "probe#"}},
		Limit:                     aws.Int32(1),
	})
	switch {
	case err == nil:
		return nil
	case indexUnusable(err):
		return fmt.Errorf("state table %s: index %q missing or still being built, so listings of unfinished records scan the whole table; "+
			"update the worker stack (deploy/ecs/worker.yaml adds the index) and wait for the index to be ACTIVE: %w", t.name, IndexOpen, err)
	}
	return fmt.Errorf("state table %s: querying index %q: %w", t.name, IndexOpen, err)
}

// indexUnusable tells a query refused because the index is missing or still being built.
// DynamoDB answers ValidationException ("The table does not have the specified index",
// "Cannot read from backfilling global secondary index"); moto ResourceNotFoundException
// ("Invalid index").
func indexUnusable(err error) bool {
	var apiErr interface{ ErrorCode() string }
	if !errors.As(err, &apiErr) {
		return false
	}
	code := apiErr.ErrorCode()
	return (code == "ValidationException" || code == "ResourceNotFoundException") && strings.Contains(strings.ToLower(err.Error()), "index")
}

// Backfill gives the open attribute to every unfinished record written before the index
// existed, so that Unfinished lists it. It is a filtered Scan of the whole table, once per
// worker start; each record gets an UpdateItem conditioned on its version and on still being
// unfinished (a record rewritten meanwhile got the attribute from Save), which neither bumps
// its version nor touches its body. Safe to run twice and on every replica. It returns how many
// records it marked.
func (t *Table) Backfill(ctx context.Context) (int, error) {
	filter := expression.AttributeNotExists(expression.Name(AttrExpiresAt)).
		And(expression.AttributeNotExists(expression.Name(AttrOpen)))
	expr, err := expression.NewBuilder().WithFilter(filter).
		WithProjection(expression.NamesList(expression.Name(AttrPK), expression.Name(AttrSK), expression.Name(AttrVersion))).Build()
	if err != nil {
		return 0, fmt.Errorf("building the backfill scan of %s: %w", t.name, err)
	}
	in := &dynamodb.ScanInput{
		TableName:                 aws.String(t.name),
		FilterExpression:          expr.Filter(),
		ProjectionExpression:      expr.Projection(),
		ExpressionAttributeNames:  expr.Names(),
		ExpressionAttributeValues: expr.Values(),
	}
	marked := 0
	for {
		out, err := t.api.Scan(ctx, in)
		if err != nil {
			return marked, fmt.Errorf("scanning %s for records without the open attribute: %w", t.name, err)
		}
		for _, item := range out.Items {
			pk, _ := item[AttrPK].(*types.AttributeValueMemberS)
			sk, _ := item[AttrSK].(*types.AttributeValueMemberS)
			v, _ := item[AttrVersion].(*types.AttributeValueMemberN)
			if pk == nil || sk == nil || v == nil {
				continue // not a record of ours
			}
			version, perr := strconv.ParseInt(v.Value, 10, 64)
			if perr != nil {
				continue
			}
			ok, err := t.markOpen(ctx, pk.Value, sk.Value, version)
			if err != nil {
				return marked, err
			}
			if ok {
				marked++
			}
		}
		if len(out.LastEvaluatedKey) == 0 {
			return marked, nil
		}
		in.ExclusiveStartKey = out.LastEvaluatedKey
	}
}

// markOpen sets one record's open attribute if it is still unfinished at version.
func (t *Table) markOpen(ctx context.Context, pk, sk string, version int64) (bool, error) {
	cond := expression.Name(AttrVersion).Equal(expression.Value(version)).
		And(expression.AttributeNotExists(expression.Name(AttrExpiresAt))).
		And(expression.AttributeNotExists(expression.Name(AttrOpen)))
	upd := expression.Set(expression.Name(AttrOpen), expression.Value(kindOf(pk)))
	expr, err := expression.NewBuilder().WithCondition(cond).WithUpdate(upd).Build()
	if err != nil {
		return false, fmt.Errorf("building the backfill of %s/%s: %w", keyText(pk), sk, err)
	}
	_, err = t.api.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 aws.String(t.name),
		Key:                       key(pk, sk),
		ConditionExpression:       expr.Condition(),
		UpdateExpression:          expr.Update(),
		ExpressionAttributeNames:  expr.Names(),
		ExpressionAttributeValues: expr.Values(),
	})
	if err != nil {
		var ccf *types.ConditionalCheckFailedException
		if errors.As(err, &ccf) || rfaws.IsConflict(err) {
			return false, nil // rewritten, finished or marked meanwhile: nothing left to do
		}
		return false, fmt.Errorf("marking %s/%s unfinished in %s: %w", keyText(pk), sk, t.name, err)
	}
	return true, nil
}

// kindOf is pk up to and including its first '#', or all of pk when it has none.
func kindOf(pk string) string {
	if i := strings.IndexByte(pk, '#'); i >= 0 {
		return pk[:i+1]
	}
	return pk
}

func key(pk, sk string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{
		AttrPK: &types.AttributeValueMemberS{Value: pk},
		AttrSK: &types.AttributeValueMemberS{Value: sk},
	}
}

// appendBodies appends the bodies of items to bodies.
func appendBodies(bodies [][]byte, items []map[string]types.AttributeValue) ([][]byte, error) {
	for _, item := range items {
		_, body, err := decode(item)
		if err != nil {
			return nil, err
		}
		bodies = append(bodies, body)
	}
	return bodies, nil
}

func decode(item map[string]types.AttributeValue) (int64, []byte, error) {
	v, ok := item[AttrVersion].(*types.AttributeValueMemberN)
	if !ok {
		return 0, nil, errors.New("item has no numeric version")
	}
	version, err := strconv.ParseInt(v.Value, 10, 64)
	if err != nil {
		return 0, nil, fmt.Errorf("item version %q: %w", v.Value, err)
	}
	b, ok := item[AttrBody].(*types.AttributeValueMemberS)
	if !ok {
		return 0, nil, errors.New("item has no string body")
	}
	return version, []byte(b.Value), nil
}

// tokenKinds are the kinds whose partition key holds a lifecycle action token (the drain's and
// the launch gate's records): their keys appear in errors, and so in logs, only hashed.
var tokenKinds = []string{"drain#", "launch#"}

// keyText is pk as errors show it: a key holding a lifecycle action token shows the token's
// hash instead (the first 6 bytes of its SHA-256 in hex, the token_hash of the handlers' logs).
func keyText(pk string) string {
	for _, kind := range tokenKinds {
		if token, ok := strings.CutPrefix(pk, kind); ok {
			return kind + "sha256:" + messages.TokenHash(token)
		}
	}
	return pk
}
