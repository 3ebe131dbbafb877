-- Argo CD health check for mlctl.io/RankingModel (resource.customizations.health.mlctl.io_RankingModel).
-- Every phase the operator writes maps to a definite health; Unknown only for a phase we never write.
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

local function messageOf(conditionType, fallback)
  local c = condition(conditionType)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  return fallback
end

if obj.status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report status"
  return hs
end

local generation = obj.metadata and obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local phase = obj.status.phase
if phase == "Degraded" then
  hs.status = "Degraded"
  -- A failing analysis names the metric; otherwise (a manual abort, a
  -- deadline, lost replicas) the Progressing or Ready message says why.
  local analysis = condition("AnalysisHealthy")
  if analysis ~= nil and analysis.status == "False" and analysis.message ~= nil and analysis.message ~= "" then
    hs.message = analysis.message
  else
    hs.message = messageOf("Progressing", messageOf("Ready", "Rollout failed and was rolled back"))
  end
elseif phase == "Paused" then
  hs.status = "Suspended"
  hs.message = messageOf("Progressing", "Rollout paused")
elseif phase == "Progressing" or phase == "Pending" or phase == nil then
  hs.status = "Progressing"
  hs.message = messageOf("Progressing", messageOf("FeaturesReady", "Rollout in progress"))
elseif phase == "Healthy" then
  local ready = condition("Ready")
  if ready ~= nil and ready.status == "True" then
    hs.status = "Healthy"
    hs.message = messageOf("Ready", "Serving the desired version")
  else
    hs.status = "Progressing"
    hs.message = messageOf("Ready", "Waiting for the Ready condition")
  end
else
  hs.status = "Unknown"
  hs.message = "Unrecognised phase " .. tostring(phase)
end
return hs
