-- Argo CD health for envbranch.io/Environment, from the kstatus conditions the operator writes.
-- Progressing: no status yet, a generation not yet observed, Pending (waiting for its source),
-- Branching, Deleting or Reconciling=True. Degraded: phase Failed or Stalled=True.
-- Healthy: Ready=True for the current generation.
local hs = {status = "Progressing", message = "waiting for the envbranch operator"}
local st = obj.status
if st == nil then
  return hs
end
local cond = {}
for _, c in ipairs(st.conditions or {}) do
  cond[c.type] = c
end
local function said(c, default)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  return default
end
local generation = obj.metadata.generation
local observed = st.observedGeneration
if generation ~= nil and observed ~= nil and observed < generation then
  hs.message = "generation " .. generation .. " not yet observed (status is for " .. observed .. ")"
  return hs
end
local phase = st.phase or "Pending"
local stalled = cond.Stalled ~= nil and cond.Stalled.status == "True"
if phase == "Failed" or stalled then
  hs.status = "Degraded"
  hs.message = said(cond.Stalled, said(cond.Ready, "branching failed"))
  return hs
end
local reconciling = cond.Reconciling ~= nil and cond.Reconciling.status == "True"
if phase == "Pending" or phase == "Branching" or phase == "Deleting" or reconciling then
  hs.message = phase .. ": " .. said(cond.Reconciling, said(cond.Ready, "in progress"))
  return hs
end
if cond.Ready ~= nil and cond.Ready.status == "True" and observed ~= nil and observed == generation then
  hs.status = "Healthy"
  hs.message = said(cond.Ready, "Active")
  return hs
end
hs.message = phase .. ": " .. said(cond.Ready, "not ready yet")
return hs
