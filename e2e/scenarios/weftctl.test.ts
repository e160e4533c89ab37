import { netnsFactory } from './suite.js';
import { weftctlScenarios } from './weftctl.scenarios.js';

weftctlScenarios(netnsFactory);
