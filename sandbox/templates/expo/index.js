import { registerRootComponent } from 'expo';

import App from './App';

// The same entry for Expo Go on a phone and for the web build in the panel.
registerRootComponent(App);
