-- Argo CD health check for mlctl.io/FeaturePipeline (resource.customizations.health.mlctl.io_FeaturePipeline).
-- Failures first, then a deliberate suspend (a suspended pipeline is expected to go stale),
-- then freshness, then readiness.
local hs = {}

local function condition(conditionType)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == conditionType then
      return c
    end
  end
  return nil
end

local function describe(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  if c ~= nil and c.reason ~= nil and c.reason ~= "" then
    return c.reason
  end
  return fallback
end

-- Ready=False reasons that mean "failed", as opposed to "not there yet".
local function isFailureReason(reason)
  if reason == nil then
    return false
  end
  for _, word in ipairs({ "Fail", "Error", "Invalid", "Exceeded", "Crash" }) do
    if string.find(reason, word, 1, true) ~= nil then
      return true
    end
  end
  return false
end

if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report status"
  return hs
end

local generation = obj.metadata and obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and observed ~= nil and observed < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local degraded = condition("Degraded")
local ready = condition("Ready")
local fresh = condition("Fresh")
local suspended = obj.spec ~= nil and obj.spec.trigger ~= nil and obj.spec.trigger.schedule ~= nil
  and obj.spec.trigger.schedule.suspend == true

if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(degraded, "Pipeline degraded")
elseif ready ~= nil and ready.status == "False" and isFailureReason(ready.reason) then
  hs.status = "Degraded"
  hs.message = describe(ready, "Pipeline failed")
elseif suspended then
  hs.status = "Suspended"
  hs.message = "Schedule suspended (spec.trigger.schedule.suspend)"
elseif fresh ~= nil and fresh.status == "False" then
  hs.status = "Degraded"
  hs.message = "Features are stale: " .. describe(fresh, "freshness objective missed")
elseif ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready, "Pipeline ready and fresh")
else
  hs.status = "Progressing"
  hs.message = describe(ready, "Waiting for the first successful run")
end
return hs
