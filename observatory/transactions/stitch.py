"""The identity graph, resolved from plain values (docs/architecture.md, "The stitcher").

Pure: no ORM, no Django. :func:`resolve` takes hops (id, uid, business time, system and
business keys) and says which transactions they make. The database layer
(``actions.do_stitch``) feeds it whole raw components and writes the difference.

Rules:

* Keys of different kinds on one hop are one transaction: they **link**.
* A key of a *shared* kind (``batch_id``, ``file``, ``sku``, ``location``, ``store_id``)
  describes a hop and never links; it takes no part here.
* A *fan-out* key (a value from an array: an ERP batch posting naming 50 orders) never
  links. The hop joins the transaction of each such value, and a value no transaction
  holds yet becomes a transaction of its own.
* A link that would give one transaction two different values of a one-per-transaction
  kind (two order numbers, two Shopify ids) is refused and reported as a
  :class:`Conflict`; the hop then belongs to each transaction its keys ended up in.

**Arrival order does not matter.** Hops are processed in one canonical order,
``(start_time, uid)``, with union-find over the linking keys. Refused links are the only
thing in which processing order shows, and the canonical order fixes it, so
``resolve(hops)`` is a function of the *set* of hops.

**Components.** Let the *raw graph* have a node per non-shared key and an edge between
the linking keys of each hop (refusals ignored). Every union-find operation stays inside
one connected component of it (a fan-out key is a node of its own component), so
resolving each raw component separately, with each hop cut down to its keys inside that
component, gives exactly the transactions that resolving everything at once gives. That
is what lets the stitcher re-resolve only the components new hops touch
(:func:`raw_components` is the reference the database layer mirrors in SQL).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from tracing.conventions import ONE_PER_TRANSACTION_KINDS, SHARED_KINDS

KeyPair = tuple[str, str]
"""A business key as (kind, value)."""

HopKeyTuple = tuple[str, str, bool]
"""A key as a hop carries it: (kind, value, fanout)."""


@dataclass(frozen=True, slots=True)
class HopIn:
    """What the resolver needs of one hop."""

    id: int
    uid: str
    start_time: datetime
    system: str
    keys: tuple[HopKeyTuple, ...]


@dataclass(frozen=True, slots=True)
class Group:
    """One transaction: its keys and member hops.

    ``hops`` holds every member; ``fanout_hops`` the members that joined only through a
    fan-out key (a batch posting), never through a linking key.
    """

    keys: frozenset[KeyPair]
    hops: frozenset[int]
    fanout_hops: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True, order=True)
class Conflict:
    """A refused link: ``hop`` would have given a transaction holding ``existing_value`` of
    ``kind`` a second value, ``value``. When the hop carried one of the two values itself,
    that one is ``value``."""

    hop: int
    kind: str
    value: str
    existing_value: str


@dataclass
class Resolution:
    """The transactions made by a set of hops, in a canonical order (by smallest key)."""

    groups: list[Group] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    _by_key: dict[KeyPair, int] = field(default_factory=dict, repr=False)

    def group_of(self, key: KeyPair) -> int | None:
        """Index in ``groups`` of the transaction holding ``key``, if any."""
        return self._by_key.get(key)

    def memberships(self) -> dict[int, list[int]]:
        """hop id -> indexes of the groups it belongs to (several for a fan-out hop)."""
        out: dict[int, list[int]] = {}
        for i, g in enumerate(self.groups):
            for hop in g.hops:
                out.setdefault(hop, []).append(i)
        return out

    def partition(self) -> set[tuple[frozenset[KeyPair], frozenset[int]]]:
        """The groups as a comparable set of (keys, hops)."""
        return {(g.keys, g.hops) for g in self.groups}


def links_and_fanouts(keys: Iterable[HopKeyTuple]) -> tuple[list[KeyPair], list[KeyPair]]:
    """A hop's linking keys and fan-out keys, each sorted and without repeats.

    Shared kinds are dropped; a key that is both direct and in an array is linking.
    """
    link: list[KeyPair] = []
    fan: list[KeyPair] = []
    for kind, value, fanout in keys:
        if kind in SHARED_KINDS or not value:
            continue
        if fanout:
            fan.append((kind, value))
        else:
            link.append((kind, value))
    if len(link) > 1:
        link = sorted(set(link))
    if fan:
        fan = sorted(set(fan).difference(link))
    return link, fan


class _Forest:
    """Union-find over keys; each root knows its one-per-transaction values."""

    __slots__ = ("parent", "single")

    def __init__(self) -> None:
        self.parent: dict[KeyPair, KeyPair] = {}
        #: root -> {kind: value} for one-per-transaction kinds
        self.single: dict[KeyPair, dict[str, str]] = {}

    def ensure(self, key: KeyPair) -> KeyPair:
        if key in self.parent:
            return self.find(key)
        self.parent[key] = key
        self.single[key] = {key[0]: key[1]} if key[0] in ONE_PER_TRANSACTION_KINDS else {}
        return key

    def find(self, key: KeyPair) -> KeyPair:
        parent = self.parent
        root = key
        while parent[root] != root:
            root = parent[root]
        while parent[key] != root:  # path compression
            parent[key], key = root, parent[key]
        return root

    def clashes(self, a: KeyPair, b: KeyPair) -> list[tuple[str, str, str]]:
        """(kind, value in a, value in b) for each kind the two roots hold differently."""
        sa, sb = self.single[a], self.single[b]
        if len(sb) < len(sa):
            return [(k, sa[k], v) for k, v in sb.items() if k in sa and sa[k] != v]
        return [(k, v, sb[k]) for k, v in sa.items() if k in sb and sb[k] != v]

    def union(self, a: KeyPair, b: KeyPair) -> KeyPair:
        # the root with the smaller one-per map goes under the other (cheaper map merge);
        # which key is root has no visible effect: groups are read back as key sets
        if len(self.single[a]) < len(self.single[b]):
            a, b = b, a
        self.parent[b] = a
        self.single[a].update(self.single.pop(b))
        return a


def canonical_order(hop: HopIn) -> tuple[datetime, str]:
    """The one order hops are processed in: business time, then delivery uid."""
    return (hop.start_time, hop.uid)


def resolve(
    hops: Iterable[HopIn],
    split: Mapping[int, tuple[list[KeyPair], list[KeyPair]]] | None = None,
) -> Resolution:
    """The transactions ``hops`` make, independent of the order they are given in.

    ``split`` may give, by hop id, what :func:`links_and_fanouts` would say of each hop's
    keys (a caller that has it already saves the work); it then wins over ``hop.keys``.
    """
    forest = _Forest()
    conflicts: set[Conflict] = set()
    joined: list[tuple[int, list[KeyPair], list[KeyPair]]] = []
    for hop in sorted(hops, key=canonical_order):
        link, fan = split[hop.id] if split is not None else links_and_fanouts(hop.keys)
        if not link and not fan:
            continue
        carried = set(link)
        current: KeyPair | None = None
        for key in link:
            root = forest.ensure(key)
            if current is None:
                current = root
                continue
            if root == current:
                continue
            clashes = forest.clashes(current, root)
            if clashes:
                for kind, mine, theirs in clashes:
                    if (kind, theirs) in carried and (kind, mine) not in carried:
                        conflicts.add(Conflict(hop.id, kind, theirs, mine))
                    elif (kind, mine) in carried and (kind, theirs) not in carried:
                        conflicts.add(Conflict(hop.id, kind, mine, theirs))
                    else:
                        conflicts.add(Conflict(hop.id, kind, theirs, mine))
                continue
            current = forest.union(current, root)
        for key in fan:
            forest.ensure(key)
        joined.append((hop.id, link, fan))

    members: dict[KeyPair, set[int]] = {}
    fan_members: dict[KeyPair, set[int]] = {}
    for hop_id, link, fan in joined:
        direct = {forest.find(k) for k in link}
        for root in direct:
            members.setdefault(root, set()).add(hop_id)
        for k in fan:
            root = forest.find(k)
            members.setdefault(root, set()).add(hop_id)
            if root not in direct:
                fan_members.setdefault(root, set()).add(hop_id)
    keys_of: dict[KeyPair, list[KeyPair]] = {}
    for key in forest.parent:
        keys_of.setdefault(forest.find(key), []).append(key)

    ordered = sorted(keys_of.items(), key=lambda item: min(item[1]))
    result = Resolution(conflicts=sorted(conflicts))
    for i, (root, keys) in enumerate(ordered):
        result.groups.append(
            Group(
                keys=frozenset(keys),
                hops=frozenset(members.get(root, ())),
                fanout_hops=frozenset(fan_members.get(root, ())),
            )
        )
        for key in keys:
            result._by_key[key] = i
    return result


def raw_components(hops: Iterable[HopIn]) -> list[set[KeyPair]]:
    """The raw components of ``hops`` (links taken whatever the conflicts), as key sets.

    The reference for the database layer's closure, and for tests.
    """
    parent: dict[KeyPair, KeyPair] = {}

    def find(k: KeyPair) -> KeyPair:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for hop in hops:
        link, fan = links_and_fanouts(hop.keys)
        for k in (*link, *fan):
            parent.setdefault(k, k)
        for k in link[1:]:
            a, b = find(link[0]), find(k)
            if a != b:
                parent[b] = a
    comps: dict[KeyPair, set[KeyPair]] = {}
    for k in parent:
        comps.setdefault(find(k), set()).add(k)
    return sorted(comps.values(), key=min)


def restrict(hop: HopIn, keys: Mapping[KeyPair, object] | set[KeyPair]) -> HopIn:
    """``hop`` with only its keys inside ``keys`` (one or more whole raw components)."""
    kept = tuple(k for k in hop.keys if (k[0], k[1]) in keys)
    if len(kept) == len(hop.keys):
        return hop
    return HopIn(hop.id, hop.uid, hop.start_time, hop.system, kept)
