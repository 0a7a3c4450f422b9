// The live messages as the clients read them: field names and channel names, in ONE place.
// Mirrors ioe/messages.py (LiveMember, LiveCommunity, PlantPower, GeneratorPower, LiveAlarm,
// Alarm, Channel); tests/dashboards/test_messages_js.py holds this file against the Python
// dataclasses, so a field renamed on either side fails a test instead of blanking a page.
// The clients never spell a message field themselves: they write m[MEMBER.assignedW].

// the envelope of every ioe.live message (websocket "data")
export const LIVE = Object.freeze({ version: "v", type: "type", channel: "channel" });

// the "type" of each ioe.live message
export const TYPE = Object.freeze({ member: "member", community: "community", alarm: "alarm" });

// LiveMember: one member's live share (member:<cid>:<mid>)
export const MEMBER = Object.freeze({
  communityId: "community_id", memberId: "member_id", tsMs: "ts_ms",
  coefficient: "coefficient", generationW: "generation_w", assignedW: "assigned_w",
  consumptionW: "consumption_w", selfConsumptionW: "self_consumption_w",
  surplusW: "surplus_w", importW: "import_w", stale: "stale",
});

// LiveCommunity: the community aggregate (community:<cid>), never per-member values
export const COMMUNITY = Object.freeze({
  communityId: "community_id", tsMs: "ts_ms", generationW: "generation_w",
  consumptionW: "consumption_w", selfConsumptionW: "self_consumption_w",
  surplusW: "surplus_w", importW: "import_w", membersReporting: "members_reporting",
  membersTotal: "members_total", plants: "plants", generators: "generators",
});

// PlantPower (COMMUNITY.plants[<plant id>]) and GeneratorPower (COMMUNITY.generators[<id>])
export const PLANT = Object.freeze({ powerW: "power_w", tsMs: "ts_ms" });
export const GENERATOR = Object.freeze({ powerW: "power_w", tsMs: "ts_ms", stale: "stale" });

// LiveAlarm: { channel, alarm } on operators:<cid> (and the owner's member channel)
export const LIVE_ALARM = Object.freeze({ channel: "channel", alarm: "alarm" });

// Alarm: the alarm object (LIVE_ALARM.alarm on the websocket, and the REST /alarms lists)
export const ALARM = Object.freeze({
  alarmId: "alarm_id", communityId: "community_id", deviceId: "device_id",
  memberId: "member_id", kind: "kind", severity: "severity", state: "state",
  openedAtMs: "opened_at_ms", closedAtMs: "closed_at_ms", evidence: "evidence",
  updatedAtMs: "updated_at_ms", version: "version",
});

// AlarmAction: an operator's acknowledgement or assignment of an alarm (REST /alarm-actions)
export const ALARM_ACTION = Object.freeze({
  actionId: "action_id", alarmId: "alarm_id", communityId: "community_id", action: "action",
  actor: "actor", tokenId: "token_id", atMs: "at_ms", assignee: "assignee", note: "note",
});
export const ALARM_ACTION_KIND = Object.freeze({ acknowledge: "acknowledge", assign: "assign" });

export const ALARM_STATE = Object.freeze({ open: "open", closed: "closed" });
export const SEVERITY = Object.freeze({ info: "info", warning: "warning", critical: "critical" });

// channels (ioe.messages.Channel): the only place a channel name is built or read
export const CHANNEL_KIND = Object.freeze({
  member: "member", community: "community", operators: "operators",
});
export const channel = Object.freeze({
  member: (cid, mid) => `member:${cid}:${mid}`,
  community: (cid) => `community:${cid}`,
  operators: (cid) => `operators:${cid}`,
  kind: (name) => String(name).split(":")[0],
});
