/**
 * The conformance suites on the memory layers.
 */
import { SyncStorage } from "mizu-sync-live"
import { engineSuite } from "./suites/EngineSuite.js"
import { rememberedFailuresSuite, storageSuites } from "./suites/StorageSuite.js"

storageSuites("memory", SyncStorage.layerMemory)
engineSuite("memory", SyncStorage.layerMemory)
rememberedFailuresSuite("memory", SyncStorage.layerMemoryWith({ rememberedFailures: 3 }), 3)
rememberedFailuresSuite("memory", SyncStorage.layerMemoryWith({ rememberedFailures: 0 }), 0)
