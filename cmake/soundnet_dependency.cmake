# soundnet_dependency(NAME <DEP> DESCRIPTION <text> FIND <command...>)
#
# The AUTO/ON/OFF switch of one heavy optional dependency, SOUNDNET_WITH_<DEP>:
#   AUTO  use it when found (at a version the code supports), otherwise build without it
#   ON    use it; a missing or too old dependency stops the configuration with a message
#   OFF   build without it
# The caller's FIND code sets SOUNDNET_<DEP>_FOUND (and SOUNDNET_<DEP>_WHY when not found:
# what is missing or too old). Sets SOUNDNET_USE_<DEP> and records a line for the summary.
macro(soundnet_dependency_begin dep description)
  set(SOUNDNET_WITH_${dep} AUTO CACHE STRING "${description}: AUTO, ON or OFF")
  set_property(CACHE SOUNDNET_WITH_${dep} PROPERTY STRINGS AUTO ON OFF)
  string(TOUPPER "${SOUNDNET_WITH_${dep}}" _soundnet_with)
  if(NOT _soundnet_with MATCHES "^(AUTO|ON|OFF)$")
    message(FATAL_ERROR "SOUNDNET_WITH_${dep} must be AUTO, ON or OFF, not '${SOUNDNET_WITH_${dep}}'")
  endif()
  set(SOUNDNET_${dep}_FOUND OFF)
  set(SOUNDNET_${dep}_WHY "")
  set(SOUNDNET_${dep}_WANTED OFF)
  if(NOT _soundnet_with STREQUAL "OFF")
    set(SOUNDNET_${dep}_WANTED ON)
  endif()
endmacro()

macro(soundnet_dependency_end dep)
  string(TOUPPER "${SOUNDNET_WITH_${dep}}" _soundnet_with)
  set(SOUNDNET_USE_${dep} OFF)
  if(_soundnet_with STREQUAL "OFF")
    set(_soundnet_line "${dep}: off (SOUNDNET_WITH_${dep}=OFF)")
  elseif(SOUNDNET_${dep}_FOUND)
    set(SOUNDNET_USE_${dep} ON)
    set(_soundnet_line "${dep}: ${SOUNDNET_${dep}_VERSION}")
  elseif(_soundnet_with STREQUAL "ON")
    message(FATAL_ERROR "soundnet: SOUNDNET_WITH_${dep}=ON but ${SOUNDNET_${dep}_WHY}")
  else()
    set(_soundnet_line "${dep}: not used (${SOUNDNET_${dep}_WHY})")
  endif()
  list(APPEND SOUNDNET_SUMMARY "${_soundnet_line}")
endmacro()
