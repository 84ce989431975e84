"""A reference model of cypid's queue: the rules of pyx/queue.pyx written as plainly as possible.

Slow on purpose (lists and linear scans everywhere); the unit tests run the same operations against
this model and the Cython queue and require the same deliveries, callbacks and counters. When the two
disagree, read the rule here first: if it is right, the Cython queue is wrong.

Everything the queue owns is a ``Rec`` in ``self.recs``, oldest first: waiting ("avail") or delivered
and not settled ("acq"). A settled, dropped or expired message is simply removed from the list.
"""
import time

DEFAULT_GROUP = "qpid.no-group"
AVAIL, ACQ = "avail", "acq"

STAT_NAMES = (
    "msgTotalEnqueues msgTotalDequeues msgTxnEnqueues msgTxnDequeues msgPersistEnqueues msgPersistDequeues "
    "msgDepth msgDepthHigh msgDepthLow byteTotalEnqueues byteTotalDequeues byteTxnEnqueues byteTxnDequeues "
    "bytePersistEnqueues bytePersistDequeues byteDepth byteDepthHigh byteDepthLow msgFtdEnqueues "
    "msgFtdDequeues byteFtdEnqueues byteFtdDequeues msgFtdDepth byteFtdDepth enqueueTxnStarts "
    "enqueueTxnCommits enqueueTxnRejects enqueueTxnCount enqueueTxnCountHigh enqueueTxnCountLow "
    "dequeueTxnStarts dequeueTxnCommits dequeueTxnRejects dequeueTxnCount dequeueTxnCountHigh "
    "dequeueTxnCountLow releases acquires discardsTtl discardsRing discardsLvq discardsOverflow "
    "discardsSubscriber discardsPurge reroutes consumerCount consumerCountHigh consumerCountLow "
    "bindingCount bindingCountHigh bindingCountLow unackedMessages unackedMessagesHigh unackedMessagesLow "
    "flowStopped flowStoppedCount"
).split()


class QueueLimitExceeded(Exception):
    condition = "amqp:resource-limit-exceeded"

    def __init__(self, queue, policy, description):
        super().__init__(description)
        self.queue = queue
        self.policy = policy
        self.description = description


def priority_level(priority, levels):
    """AMQP 0-10's rule, as qpidd: the levels are centred on priority 5."""
    if levels <= 1:
        return 0
    first = 5 - min(5, (levels + 1) // 2)
    if priority <= first:
        return 0
    return min(priority - first, levels - 1)


def as_text(value):
    if value is None:
        return ""
    if isinstance(value, str):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


class Rec:
    def __init__(self, msg, seq, size, durable, expires, level, key, ftd):
        self.msg = msg
        self.seq = seq
        self.size = size
        self.durable = durable
        self.expires = expires
        self.level = level
        self.key = key          # LVQ key or group name
        self.ftd = ftd
        self.state = AVAIL


class ReferenceQueue:
    def __init__(self, name, settings, reroute, on_unused=None):
        self.name = name
        self.settings = settings
        self.durable = settings.durable
        self.auto_delete = settings.auto_delete
        self.alternate_exchange = settings.alternate_exchange
        self.exclusive_owner = None
        self.deleted = False
        self.had_consumers = False
        self.consumers = []
        self._reroute = reroute
        self._on_unused = on_unused
        self.on_flow_resume = None
        self.dequeue_hook = None
        self.ftd_hook = None
        self.on_self_destruct = None
        self.clock = None
        self.recs = []
        self.next_seq = 1
        self.rr = 0
        self.events = []
        self.dispatching = False
        self.redispatch = False
        self.lvq_index = {}         # key -> seq of the newest message with that key
        self.group_owner_of = {}    # group name -> consumer holding it
        s = settings
        self.policy = s.policy_type
        self.levels = min(s.priorities, 10)
        self.limits = [s.fairshare_levels.get(i, s.fairshare) for i in range(self.levels)]
        self.fair = any(self.limits)
        self.cursor = self.levels - 1     # fairshare: whose turn, and how many taken in it
        self.taken = 0
        for stat in STAT_NAMES:
            setattr(self, stat, 0)
        self.flowStopped = False

    # -- counters -------------------------------------------------------------------------------
    @property
    def depth(self):
        return sum(1 for r in self.recs if r.state == AVAIL)

    @property
    def flow_stopped(self):
        return self.flowStopped

    def _set_depth(self):
        self.msgDepth = len(self.recs)
        self.byteDepth = sum(r.size for r in self.recs)
        self.msgDepthHigh = max(self.msgDepthHigh, self.msgDepth)
        self.byteDepthHigh = max(self.byteDepthHigh, self.byteDepth)

    def _set_unacked(self):
        self.unackedMessages = sum(1 for r in self.recs if r.state == ACQ)
        self.unackedMessagesHigh = max(self.unackedMessagesHigh, self.unackedMessages)

    def _counted_in(self, r):
        self.msgTotalEnqueues += 1
        self.byteTotalEnqueues += r.size
        if r.durable:
            self.msgPersistEnqueues += 1
            self.bytePersistEnqueues += r.size
        if r.ftd:
            self.msgFtdEnqueues += 1
            self.byteFtdEnqueues += r.size
            self.msgFtdDepth += 1
            self.byteFtdDepth += r.size

    def _counted_out(self, r):
        self.msgTotalDequeues += 1
        self.byteTotalDequeues += r.size
        if r.durable:
            self.msgPersistDequeues += 1
            self.bytePersistDequeues += r.size
        if r.ftd:
            self.msgFtdDequeues += 1
            self.byteFtdDequeues += r.size
            self.msgFtdDepth -= 1
            self.byteFtdDepth -= r.size

    def _now(self):
        return time.monotonic() if self.clock is None else float(self.clock())

    def _expired(self, r, now):
        return r.expires != 0.0 and now >= r.expires

    # -- removing -------------------------------------------------------------------------------
    def _drop(self, r):
        """r leaves the queue for good."""
        self.recs.remove(r)
        self._counted_out(r)
        self._set_depth()
        self._set_unacked()
        if self.settings.lvq_key is not None and self.lvq_index.get(r.key) == r.seq:
            del self.lvq_index[r.key]
        self._free_groups()
        if ((r.durable and self.durable) or r.ftd) and self.dequeue_hook is not None:
            self.events.append(("dequeue", r.msg))
        self._check_resume()
        return r.msg

    def _check_resume(self):
        s = self.settings
        if self.flowStopped and (s.flow_resume_size == 0 or self.byteDepth < s.flow_resume_size) and \
                (s.flow_resume_count == 0 or self.msgDepth < s.flow_resume_count):
            self.flowStopped = False
            self.events.append(("resume",))

    def _free_groups(self):
        """A group is held only while one of its messages is acquired."""
        held = {r.key for r in self.recs if r.state == ACQ}
        for name in list(self.group_owner_of):
            if name not in held:
                del self.group_owner_of[name]

    def _expire(self, r):
        msg = self._drop(r)
        self.discardsTtl += 1
        if self.alternate_exchange:
            self.events.append(("reroute", msg, self.alternate_exchange))

    def _flush(self):
        while self.events:
            ev = self.events.pop(0)
            if ev[0] == "reroute":
                self._reroute(ev[1], ev[2])
            elif ev[0] == "dequeue":
                if self.dequeue_hook is not None:
                    self.dequeue_hook(ev[1])
            elif ev[0] == "resume":
                if self.on_flow_resume is not None:
                    self.on_flow_resume(self)
            elif ev[0] == "ftd":
                if self.ftd_hook is not None:
                    self.ftd_hook(ev[1])
            elif ev[0] == "destruct":
                if self.on_self_destruct is not None:
                    self.on_self_destruct(self)

    # -- producers ------------------------------------------------------------------------------
    def _fits(self, size, count, nbytes):
        s = self.settings
        return not ((s.max_count and count + 1 > s.max_count) or (s.max_size and nbytes + size > s.max_size))

    def _limit_error(self, why=""):
        s = self.settings
        cur = ["count: %d" % self.msgDepth] + (["size: %d" % self.byteDepth] if s.max_size else [])
        mx = (["count: %d" % s.max_count] if s.max_count else []) + (["size: %d" % s.max_size] if s.max_size else [])
        text = "Maximum depth exceeded on %s: current=[%s], max=[%s]" % (self.name, ", ".join(cur), ", ".join(mx))
        if why:
            text += " (%s)" % why
        return QueueLimitExceeded(self.name, s.policy_type, text)

    def enqueue(self, msg):
        s = self.settings
        size, durable, expires = msg.size, msg.durable, msg.expires or 0.0
        priority = msg.priority if self.levels else 0
        level = priority_level(priority, self.levels) if self.levels else 0
        key = None
        if s.lvq_key is not None:
            key = as_text(msg.application_properties().get(s.lvq_key))
        elif s.group_header_key is not None:
            value = msg.application_properties().get(s.group_header_key)
            key = s.default_group if value is None else as_text(value)
        ftd = False
        if not self._fits(size, self.msgDepth, self.byteDepth):
            verdict = self._limits(msg, size, priority)
            if verdict == "drop":
                self._flush()
                return False
            ftd = verdict == "ftd"
        if s.lvq_key is not None and key in self.lvq_index:
            old = next(r for r in self.recs if r.seq == self.lvq_index[key])
            self.discardsLvq += 1
            if s.lvq_no_browse and old.state == AVAIL:
                # the new message takes the old one's place and sequence number
                msg.seq = old.seq
                self._counted_out(old)
                if ((old.durable and self.durable) or old.ftd) and self.dequeue_hook is not None:
                    self.events.append(("dequeue", old.msg))
                new = Rec(msg, old.seq, size, durable, expires, level, key, ftd)
                self.recs[self.recs.index(old)] = new
                self._counted_in(new)
                self._set_depth()
                if self.flowStopped:
                    self._check_resume()
                else:
                    self._check_stop()
                if ftd:
                    self.events.append(("ftd", msg))
                self._flush()
                if self.consumers:
                    self.dispatch()
                return True
            self._drop(old)
        seq = self.next_seq
        self.next_seq += 1
        msg.seq = seq
        r = Rec(msg, seq, size, durable, expires, level, key, ftd)
        self.recs.append(r)
        self._counted_in(r)
        self._set_depth()
        if s.lvq_key is not None:
            self.lvq_index[key] = seq
        if not self.flowStopped:
            self._check_stop()
        if ftd:
            self.events.append(("ftd", msg))
        self._flush()
        if self.consumers:
            self.dispatch()
        return True

    def _check_stop(self):
        s = self.settings
        if (s.flow_stop_count and self.msgDepth > s.flow_stop_count) or \
                (s.flow_stop_size and self.byteDepth > s.flow_stop_size):
            self.flowStopped = True
            self.flowStoppedCount += 1

    def _limits(self, msg, size, priority):
        """The message does not fit: "ok", "ftd" or "drop", or raise."""
        s = self.settings
        policy = self.policy
        if policy == "flow_to_disk" and self.ftd_hook is not None:
            return "ftd"
        if policy in ("reject", "flow_to_disk"):
            self.discardsOverflow += 1
            raise self._limit_error()
        if policy == "self-destruct":
            self.discardsOverflow += 1
            self.events.append(("destruct",))
            return "drop"
        if s.max_size and size > s.max_size:
            self.discardsOverflow += 1
            raise QueueLimitExceeded(self.name, s.policy_type, "Message larger than configured maximum depth on "
                                     "%s: size=%d, max-size=%d" % (self.name, size, s.max_size))
        if policy == "ring_strict":
            victims, count, nbytes = [], self.msgDepth, self.byteDepth
            for r in self.recs:
                if self._fits(size, count, nbytes):
                    break
                if r.state == ACQ:
                    self.discardsOverflow += 1
                    raise self._limit_error("the oldest message is acquired")
                victims.append(r)
                count -= 1
                nbytes -= r.size
            for r in victims:
                self._ring_drop(r)
            return "ok"
        # ring
        while not self._fits(size, self.msgDepth, self.byteDepth):
            waiting = [r for r in self.recs if r.state == AVAIL]
            if self.levels and waiting:
                lowest = min(r.level for r in waiting)
                victim = [r for r in waiting if r.level == lowest][0]
                if victim.msg.priority > priority:
                    victim = None
            else:
                victim = waiting[0] if waiting else None
            if victim is None:
                self.discardsRing += 1
                return "drop"
            self._ring_drop(victim)
        return "ok"

    def _ring_drop(self, r):
        msg = self._drop(r)
        self.discardsRing += 1
        if self.alternate_exchange:
            self.events.append(("reroute", msg, self.alternate_exchange))

    # -- consumers ------------------------------------------------------------------------------
    def add_consumer(self, link):
        self.consumers.append(link)
        self.had_consumers = True
        self.consumerCount = len(self.consumers)
        self.consumerCountHigh = max(self.consumerCountHigh, self.consumerCount)

    def remove_consumer(self, link):
        if link not in self.consumers:
            return
        self.consumers.remove(link)
        self.consumerCount = len(self.consumers)
        if not self.consumers and self.auto_delete and self._on_unused is not None:
            self._on_unused(self)

    def dispatch(self):
        if self.dispatching:
            self.redispatch = True
            return
        self.dispatching = True
        try:
            while True:
                self.redispatch = False
                self._dispatch()
                if not self.redispatch:
                    break
        finally:
            self.dispatching = False

    def _dispatch(self):
        idle = 0
        while True:
            n = len(self.consumers)
            if n == 0 or idle >= n or self.depth == 0:
                break
            self.rr = (self.rr + 1) % n
            link = self.consumers[self.rr]
            if link.browsing:
                self._browse(link)
                idle += 1
                continue
            if not link.can_take():
                idle += 1
                continue
            r = self._next_for(link)
            if r is None:
                idle += 1
                continue
            r.state = ACQ
            self.acquires += 1
            self._set_unacked()
            if self.settings.group_header_key is not None:
                self.group_owner_of[r.key] = link
            if self.fair:
                self.cursor, self.taken = self._fair_choice[0], self._fair_choice[1] + 1
            link.deliver(r.msg, self)
            idle = 0
        self._flush()

    def _candidate(self):
        """The waiting message next in the queue's order (expired or not)."""
        waiting = [r for r in self.recs if r.state == AVAIL]
        if not waiting:
            return None
        if not self.levels:
            return waiting[0]
        counts = [sum(1 for r in waiting if r.level == lv) for lv in range(self.levels)]
        if not self.fair:
            top = max(r.level for r in waiting)
            return [r for r in waiting if r.level == top][0]
        # fairshare: the level whose turn it is gives at most its limit in a row, then the turn
        # passes downwards (from level 0 back to the top) to the next level with messages
        p, c = self.cursor, self.taken
        if self.limits[p] and c >= self.limits[p]:
            p, c = (p - 1) % self.levels, 0
        while not counts[p]:
            p, c = (p - 1) % self.levels, 0
        self._fair_choice = (p, c)
        return [r for r in waiting if r.level == p][0]

    def _next_for(self, link):
        groups = self.settings.group_header_key is not None
        while True:
            now = self._now()
            if groups:
                choice = None
                for r in self.recs:
                    if r.state != AVAIL:
                        continue
                    if self._expired(r, now):
                        choice = ("expire", r)
                        break
                    owner = self.group_owner_of.get(r.key)
                    if owner is None or owner is link:
                        choice = ("take", r)
                        break
                if choice is None:
                    return None
            else:
                r = self._candidate()
                if r is None:
                    return None
                choice = ("expire", r) if self._expired(r, now) else ("take", r)
            if choice[0] == "take":
                return choice[1]
            self._expire(choice[1])

    def _browse(self, link):
        while link.can_take():
            later = [r for r in self.recs if r.state == AVAIL and r.seq > link.browse_position]
            if not later:
                return
            r = later[0]
            if self._expired(r, self._now()):
                self._expire(r)
                continue
            link.browse_position = r.seq
            link.deliver(r.msg, self)

    def has_message_for(self, link):
        now = self._now()
        for r in self.recs:
            if r.state != AVAIL or self._expired(r, now):
                continue
            if link.browsing:
                if r.seq > link.browse_position:
                    return True
                continue
            if self.settings.group_header_key is None:
                return True
            owner = self.group_owner_of.get(r.key)
            if owner is None or owner is link:
                return True
        return False

    # -- settlement -----------------------------------------------------------------------------
    def _held(self, msg):
        for r in self.recs:
            if r.msg is msg and r.state == ACQ:
                return r
        return None

    def _group_freed(self, r):
        """Settling r freed its message group, which still has messages waiting."""
        if self.settings.group_header_key is None or r.key in self.group_owner_of:
            return False
        return any(x.key == r.key for x in self.recs)

    def dequeued(self, msg):
        r = self._held(msg)
        if r is not None:
            self._drop(r)
            self._flush()
            if self.consumers and self._group_freed(r):
                self.dispatch()     # consumers skipped its messages while it was held

    def release(self, msg, count_failure=False):
        r = self._held(msg)
        if r is None:
            return
        self.releases += 1
        msg.acquired_before = True
        if count_failure:
            msg.delivery_count += 1
        if self.deleted:
            self._drop(r)
            if self.alternate_exchange:
                self.events.append(("reroute", msg, self.alternate_exchange))
            self._flush()
            return
        r.state = AVAIL
        self._set_unacked()
        self._free_groups()
        self._flush()
        if self.consumers:
            self.dispatch()

    def reject(self, msg):
        r = self._held(msg)
        if r is None:
            return
        self.discardsSubscriber += 1
        self._drop(r)
        if self.alternate_exchange:
            msg.delivery_count = 0
            self.events.append(("reroute", msg, self.alternate_exchange))
        self._flush()
        if self.consumers and self._group_freed(r):
            self.dispatch()

    # -- management -----------------------------------------------------------------------------
    def purge(self, request=0, exchange=None):
        waiting = [r for r in self.recs if r.state == AVAIL]
        if request:
            waiting = waiting[:request]
        for r in waiting:
            msg = self._drop(r)
            if exchange:
                self.events.append(("reroute", msg, exchange))
        self.acquires += len(waiting)
        if exchange:
            self.reroutes += len(waiting)
        else:
            self.discardsPurge += len(waiting)
        self._flush()
        return len(waiting)

    def purge_expired(self):
        now = self._now()
        gone = [r for r in self.recs if r.state == AVAIL and self._expired(r, now)]
        for r in gone:
            self._expire(r)
        self._flush()
        return len(gone)

    def drain_all(self):
        out = [self._drop(r) for r in [r for r in self.recs if r.state == AVAIL]]
        self._flush()
        return out

    def group_owner(self, name):
        return self.group_owner_of.get(name)

    def messages_waiting(self):
        return [r.msg for r in self.recs if r.state == AVAIL]
