-- Argo CD health check for mailcontinuity.io/MailContinuity
-- (resource.customizations.health.mailcontinuity.io_MailContinuity in argocd-cm).
-- kstatus conditions, in this order:
--   no status yet                          -> Progressing
--   FailoverActive=True                    -> Degraded: Exchange is down and mail flows to Gmail
--   status.observedGeneration < generation -> Progressing: the operator has not seen the spec yet
--   Stalled=True                           -> Degraded: a human must act (the message says what)
--   Reconciling=True                       -> Progressing
--   Ready=True                             -> Healthy
--   anything else                          -> Progressing
local hs = {}

local function condition(conditions, type)
  if conditions == nil then
    return nil
  end
  for _, c in ipairs(conditions) do
    if c.type == type then
      return c
    end
  end
  return nil
end

local function isTrue(c)
  return c ~= nil and c.status == "True"
end

local function describe(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    if c.reason ~= nil and c.reason ~= "" then
      return c.reason .. ": " .. c.message
    end
    return c.message
  end
  if c ~= nil and c.reason ~= nil and c.reason ~= "" then
    return c.reason
  end
  return fallback
end

if obj.status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report status"
  return hs
end

local conditions = obj.status.conditions
local failover = condition(conditions, "FailoverActive")
if isTrue(failover) then
  hs.status = "Degraded"
  local why = "Exchange is down"
  if obj.spec ~= nil and obj.spec.failover ~= nil and obj.spec.failover.manual == "Active" then
    why = "failover forced by spec.failover.manual: Active"
  end
  hs.message = "Failover active (" .. why .. "): inbound mail is flowing to Gmail; the relay replays to Exchange when it is back"
  local detail = describe(failover, nil)
  if detail ~= nil then
    hs.message = hs.message .. ". " .. detail
  end
  return hs
end

local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local stalled = condition(conditions, "Stalled")
if isTrue(stalled) then
  hs.status = "Degraded"
  hs.message = describe(stalled, "Stalled")
  return hs
end

local reconciling = condition(conditions, "Reconciling")
if isTrue(reconciling) then
  hs.status = "Progressing"
  hs.message = describe(reconciling, "Reconciling")
  return hs
end

local ready = condition(conditions, "Ready")
if isTrue(ready) then
  hs.status = "Healthy"
  hs.message = describe(ready, "Ready")
  return hs
end

hs.status = "Progressing"
hs.message = describe(ready, "Waiting for Ready")
return hs
