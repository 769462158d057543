/*
 * heap_counter ITERATIONS
 *
 * Heap state: a singly linked list of NODES separately malloc'ed nodes of
 * varying sizes (so they sit in glibc's main arena, spread over brk memory)
 * and a 4 MiB array (above the mmap threshold, so it is its own anonymous
 * mapping). Everything holds values derived from a counter; a checksum over
 * all of it is kept in a malloc'ed state block.
 *
 * Every tick: verify every node, every array word and the stored checksum
 * against the counter; bump the counter; free one node and malloc its
 * replacement (the allocator's free lists and top chunk must work after a
 * restore); rewrite all node values and one eighth of the array (so most
 * array pages stay clean for several ticks); store the new checksum; verify
 * everything again; print `tick <i> counter=<c> sum=<hex>`.
 */
#include "common.h"

#define NODES 1000
#define ARRAY_BYTES (4u << 20)
#define ARRAY_WORDS (ARRAY_BYTES / sizeof(uint64_t))
#define STRIPE_WORDS 512 /* one 4 KiB page */
#define STRIPES 8	 /* the array is rewritten one stripe class per tick */

struct node {
	struct node *next;
	uint32_t idx;
	uint32_t len; /* payload bytes */
	uint64_t value;
	unsigned char payload[];
};

struct state {
	uint64_t magic;
	uint64_t counter;
	uint64_t checksum;
	struct node *head;
	uint64_t *array;
	uint64_t replaced; /* nodes freed and re-allocated so far */
	uint64_t magic2;
};

#define MAGIC 0x6865617063746e72ULL

static uint64_t node_value(uint32_t idx, uint64_t counter)
{
	return mix64(((uint64_t)idx << 32) ^ counter);
}

static uint32_t node_len(uint32_t idx, uint64_t generation)
{
	return 16 + (uint32_t)(mix64(idx * 131u + generation) % 240);
}

static unsigned char payload_byte(uint64_t value, uint32_t k)
{
	return (unsigned char)((value >> (8 * (k % 8))) ^ k);
}

/* Counter value at which array word j was last written (0: initial fill). */
static uint64_t array_stamp(size_t j, uint64_t counter)
{
	uint64_t cls = (j / STRIPE_WORDS) % STRIPES;
	uint64_t back = (counter + STRIPES - cls) % STRIPES;

	return counter >= back ? counter - back : 0;
}

static uint64_t array_value(size_t j, uint64_t stamp)
{
	return mix64((uint64_t)j * 0x100000001b3ULL + stamp);
}

static void fill_node(struct node *n, uint64_t counter)
{
	n->value = node_value(n->idx, counter);
	for (uint32_t k = 0; k < n->len; k++)
		n->payload[k] = payload_byte(n->value, k);
}

static uint64_t compute_checksum(const struct state *s)
{
	uint64_t h = FNV_INIT;
	const struct node *n;

	for (n = s->head; n; n = n->next) {
		h = hash_u64(h, n->idx);
		h = hash_u64(h, n->value);
		h = fnv1a(h, n->payload, n->len);
	}
	for (size_t j = 0; j < ARRAY_WORDS; j += 64) {
		uint64_t x = 0;

		for (size_t k = 0; k < 64; k++)
			x ^= s->array[j + k] + k;
		h = hash_u64(h, x);
	}
	return hash_u64(h, s->counter);
}

static void verify(const struct state *s, const char *when)
{
	const struct node *n;
	uint32_t count = 0;

	CHECK(s->magic == MAGIC && s->magic2 == ~MAGIC, "%s: state block corrupted", when);
	for (n = s->head; n; n = n->next, count++) {
		CHECK(count < NODES, "%s: list longer than %d nodes (cycle?)", when, NODES);
		CHECK(n->idx == count, "%s: node %u has idx %u", when, count, n->idx);
		CHECK(n->len >= 16 && n->len < 256, "%s: node %u has len %u", when, count,
		      n->len);
		CHECK(n->value == node_value(n->idx, s->counter),
		      "%s: node %u value %016llx, expected %016llx", when, count,
		      (unsigned long long)n->value,
		      (unsigned long long)node_value(n->idx, s->counter));
		for (uint32_t k = 0; k < n->len; k++)
			CHECK(n->payload[k] == payload_byte(n->value, k),
			      "%s: node %u payload byte %u wrong", when, count, k);
	}
	CHECK(count == NODES, "%s: list has %u nodes, expected %d", when, count, NODES);
	for (size_t j = 0; j < ARRAY_WORDS; j++) {
		uint64_t want = array_value(j, array_stamp(j, s->counter));

		CHECK(s->array[j] == want, "%s: array word %zu is %016llx, expected %016llx",
		      when, j, (unsigned long long)s->array[j], (unsigned long long)want);
	}
	CHECK(compute_checksum(s) == s->checksum, "%s: checksum mismatch", when);
}

static struct node *new_node(uint32_t idx, uint64_t generation)
{
	uint32_t len = node_len(idx, generation);
	struct node *n = malloc(sizeof(*n) + len);

	CHECK_SYS(n != NULL, "malloc node");
	n->next = NULL;
	n->idx = idx;
	n->len = len;
	return n;
}

/* Frees node number `pos` and links a freshly malloc'ed one in its place. */
static void replace_node(struct state *s, uint32_t pos)
{
	struct node **link = &s->head, *old, *n;

	for (uint32_t i = 0; i < pos; i++)
		link = &(*link)->next;
	old = *link;
	n = new_node(pos, s->replaced + 1);
	n->next = old->next;
	*link = n;
	memset(old, 0xdb, sizeof(*old) + old->len);
	free(old);
	s->replaced++;
}

int main(int argc, char **argv)
{
	long iters = prog_init("heap_counter", argc, argv, 0, "ITERATIONS");
	struct state *s = calloc(1, sizeof(*s));
	struct node **tail;

	CHECK_SYS(s != NULL, "calloc state");
	s->magic = MAGIC;
	s->magic2 = ~MAGIC;
	tail = &s->head;
	for (uint32_t i = 0; i < NODES; i++) {
		struct node *n = new_node(i, 0);

		fill_node(n, 0);
		*tail = n;
		tail = &n->next;
	}
	s->array = malloc(ARRAY_BYTES);
	CHECK_SYS(s->array != NULL, "malloc array");
	for (size_t j = 0; j < ARRAY_WORDS; j++)
		s->array[j] = array_value(j, 0);
	s->checksum = compute_checksum(s);
	verify(s, "start");

	ready_line();
	for (long i = 0; i < iters; i++) {
		struct node *n;
		uint64_t cls;

		verify(s, "before tick");
		s->counter++;
		replace_node(s, (uint32_t)((s->counter * 7919) % NODES));
		for (n = s->head; n; n = n->next)
			fill_node(n, s->counter);
		cls = s->counter % STRIPES;
		for (size_t j = cls * STRIPE_WORDS; j < ARRAY_WORDS; j += STRIPES * STRIPE_WORDS)
			for (size_t k = 0; k < STRIPE_WORDS; k++)
				s->array[j + k] = array_value(j + k, s->counter);
		s->checksum = compute_checksum(s);
		verify(s, "after update");
		tick_line(i, "counter=%llu sum=%016llx", (unsigned long long)s->counter,
			  (unsigned long long)s->checksum);
		sleep_ms(100);
	}
	verify(s, "end");
	ok_line("counter=%llu sum=%016llx replaced=%llu", (unsigned long long)s->counter,
		(unsigned long long)s->checksum, (unsigned long long)s->replaced);
	return 0;
}
